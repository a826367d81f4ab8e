"""Instruction files: Markdown with optional TOML front matter between `+++` lines."""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from codexd.config import limits
from codexd.errors import InvalidInput
from codexd.tasks import taskid
from codexd.tasks.taken import MAX_AFTER, MAX_PRIORITY

FENCE = "+++"
TAG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_BYTES = 1 << 20
KEYS: dict[str, str] = {
    "task_id": "a task id",
    "type": "a task type name",
    "cwd": "the folder Codex works in",
    "stall_timeout": "seconds without progress before the task counts as stalled",
    "timeout": "seconds of wall time for the whole task, across restarts",
    "max_tokens": "tokens the whole task may use",
    "notify_urls": "more apprise URLs for this task's notices",
    "notify_tags": "tags choosing which tagged notify.urls hear this task",
    "after": "ids of tasks that must complete before this one starts",
    "priority": f"a whole number from -{MAX_PRIORITY} to {MAX_PRIORITY}: higher starts first",
    "worktree": "true: run in a new git worktree of cwd, on branch codexd/<task-id>",
    "base": "the branch, tag or commit the worktree starts from (default: HEAD)",
}


@dataclass(frozen=True)
class Instructions:
    fields: dict[str, Any]
    body: str
    body_offset: int  # byte offset of the body in the file, for Codex's stdin

    @property
    def task_id(self) -> str | None:
        value = self.fields.get("task_id")
        return str(value) if value is not None else None


def _split(text: str) -> tuple[str | None, str, int]:
    """(front matter or None, body, character offset of the body)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n") != FENCE:
        return None, text, 0
    offset = len(lines[0])
    for i, line in enumerate(lines[1:], start=1):
        if line.rstrip("\r\n") == FENCE:
            front = "".join(lines[1:i])
            start = offset + len(front) + len(line)
            return front, text[start:], start
    raise InvalidInput("front matter opened with '+++' on the first line is never closed: add a '+++' line")


def _check_fields(fields: dict[str, Any]) -> None:
    unknown = sorted(set(fields) - set(KEYS))
    if unknown:
        raise InvalidInput(f"unknown front matter key(s) {', '.join(unknown)}: allowed are {', '.join(KEYS)}")
    for key in ("task_id", "type", "cwd"):
        if key in fields and not isinstance(fields[key], str):
            raise InvalidInput(f"front matter {key} must be a string ({KEYS[key]})")
    if "task_id" in fields:
        taskid.check(fields["task_id"])
    _check_notify(fields)
    _check_limits(fields)
    _check_order(fields)
    _check_worktree(fields)


def _check_limits(fields: dict[str, Any]) -> None:
    for key in ("stall_timeout", "timeout"):
        timeout = fields.get(key)
        if timeout is not None and not (limits.is_duration(timeout) and timeout > 0):
            raise InvalidInput(
                f"front matter {key} must be a number of seconds greater than 0 "
                f"and at most {limits.MAX_SECONDS} (a year)"
            )
    tokens = fields.get("max_tokens")
    if tokens is not None and not (isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 1):
        raise InvalidInput("front matter max_tokens must be a whole number of tokens, 1 or more")


def _check_order(fields: dict[str, Any]) -> None:
    """`after` (task ids, at most MAX_AFTER, never the task's own) and `priority`."""
    after = _string_list(fields, "after")
    if len(after) > MAX_AFTER:
        raise InvalidInput(f"front matter after names {len(after)} tasks: at most {MAX_AFTER}")
    for name in after:
        if not taskid.is_valid(name):
            raise InvalidInput(
                f"front matter after: {name[:130]!r} is not a task id: use 1-128 letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
    if fields.get("task_id") in after:
        raise InvalidInput(
            f"front matter after names the task itself ({fields['task_id']}): drop it from after"
        )
    priority = fields.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > MAX_PRIORITY:
        raise InvalidInput(f"front matter priority must be {KEYS['priority']}")


def _check_worktree(fields: dict[str, Any]) -> None:
    if "worktree" in fields and not isinstance(fields["worktree"], bool):
        raise InvalidInput("front matter worktree must be true or false")
    base = fields.get("base")
    if base is not None and (not isinstance(base, str) or not base.strip() or base.startswith("-")):
        raise InvalidInput("front matter base must name a branch, tag or commit (where the worktree starts)")


def _string_list(fields: dict[str, Any], key: str) -> list[str]:
    value = fields.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"front matter {key} must be a list of strings ({KEYS[key]})")
    return value


def _check_notify(fields: dict[str, Any]) -> None:
    for n, url in enumerate(_string_list(fields, "notify_urls"), start=1):
        if "://" not in url:  # the URL itself is a secret: never repeat it in an error
            raise InvalidInput(f"front matter notify_urls entry {n} is not an apprise URL (service://...)")
    for tag in _string_list(fields, "notify_tags"):
        if not TAG.match(tag):
            raise InvalidInput(
                f"front matter notify_tags: {tag[:64]!r} is not a tag: use letters, digits, _ and -"
            )


def parse(raw: bytes) -> Instructions:
    """The instruction file's fields and body; InvalidInput says what is wrong."""
    if len(raw) > MAX_BYTES:
        raise InvalidInput(f"instruction file is {len(raw)} bytes, over the 1 MiB limit: shorten it")
    bom = raw.startswith(b"\xef\xbb\xbf")
    try:
        text = raw[3 if bom else 0 :].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"instruction file is not UTF-8 text (bad byte at {exc.start}): save it as UTF-8"
        ) from None
    front, body, start = _split(text)
    fields: dict[str, Any] = {}
    if front is not None:
        try:
            fields = tomllib.loads(front)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"front matter is not valid TOML: {exc}") from None
        except RecursionError:
            raise InvalidInput("front matter is nested too deeply: use plain keys") from None
        _check_fields(fields)
    if not body.strip():
        raise InvalidInput(
            "instruction file has no instructions after the front matter: write what Codex should do"
        )
    offset = (3 if bom else 0) + len(text[:start].encode("utf-8"))
    return Instructions(fields=fields, body=body, body_offset=offset)


def _toml_value(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "inf"
    # JSON strings are TOML basic strings, except that TOML also wants DEL escaped.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def render(fields: dict[str, Any], body: str) -> bytes:
    """An instruction file with `fields` as front matter (strings, numbers: JSON is valid TOML)."""
    if not fields:
        return body.encode("utf-8")
    lines = [f"{key} = {_toml_value(value)}" for key, value in fields.items()]
    try:
        return (f"{FENCE}\n" + "\n".join(lines) + f"\n{FENCE}\n" + body).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            "a value is not valid UTF-8 text: check the --cwd, --task-id or --type given"
        ) from None
