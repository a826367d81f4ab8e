"""What the daemon took from a task's instruction file when it accepted it: read once.

Kept in status.json (`taken`), so that nothing parses the front matter again: not a spawn
(where Codex's stdin starts), not a notice (which tagged URLs hear the task). A record an
older codexd wrote has none (None): its instructions.md is read as it was then.
The task's own notification URLs are secrets and stay out of status.json, which `status
--json` prints: only whether there are any is kept here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codexd.config.defaultdirs import is_task_id
from codexd.config.limits import is_duration
from codexd.fields import Fields

MAX_AFTER = 100  # tasks one task may run after
MAX_PRIORITY = 1000  # priorities run from -MAX_PRIORITY to MAX_PRIORITY


@dataclass(frozen=True)
class Taken:
    body_offset: int = 0  # bytes of instructions.md before its body: where Codex's stdin starts
    notify_tags: tuple[str, ...] = ()  # which tagged notify.urls hear the task
    own_urls: bool = False  # its front matter has notify_urls (read from there, never kept here)
    timeout: float | None = None  # its own wall-time limit (else health.timeout)
    max_tokens: int | None = None  # its own token budget (else health.max_tokens)
    after: tuple[str, ...] = ()  # tasks that must complete before it starts (daemon/queueorder)
    priority: int = 0  # higher starts first among queued tasks
    worktree: bool = False  # run in a git worktree of its own (front matter, else the setting)
    base: str | None = None  # the worktree starts from this ref (else the repository's HEAD)

    @classmethod
    def of(cls, fields: dict[str, Any], body_offset: int) -> Taken:
        """From an instruction file's checked front matter."""
        tags = tuple(str(t) for t in fields.get("notify_tags", ()))
        timeout, tokens = fields.get("timeout"), fields.get("max_tokens")
        return cls(
            body_offset,
            tags,
            bool(fields.get("notify_urls")),
            float(timeout) if timeout is not None else None,
            int(tokens) if tokens is not None else None,
            after=tuple(dict.fromkeys(str(a) for a in fields.get("after", ()))),  # each once, in order
            priority=int(fields.get("priority", 0)),
            worktree=fields.get("worktree") is True,
            base=str(fields["base"]) if fields.get("base") is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "body_offset": self.body_offset,
            "notify_tags": list(self.notify_tags),
            "own_urls": self.own_urls,
            "timeout": self.timeout,
            "max_tokens": self.max_tokens,
            "after": list(self.after),
            "priority": self.priority,
            "worktree": self.worktree,
            "base": self.base,
        }

    @classmethod
    def read(cls, f: Fields) -> Taken | None:
        if not f.data:
            return None
        tags = f.items("notify_tags")
        if not all(isinstance(t, str) for t in tags):
            f.bad.append(f.prefix + "notify_tags")
        own = f.data.get("own_urls")
        return cls(
            body_offset=f.integer("body_offset") or 0,
            notify_tags=tuple(t for t in tags if isinstance(t, str)),
            own_urls=own if isinstance(own, bool) else f.ignore("own_urls", True),  # unsure: look
            timeout=_timeout(f),
            max_tokens=f.integer("max_tokens", None, 1),
            after=_after(f),
            priority=f.integer("priority", 0, -MAX_PRIORITY, MAX_PRIORITY) or 0,
            worktree=f.data.get("worktree") is True,
            base=f.text("base"),
        )


def _after(f: Fields) -> tuple[str, ...]:
    found = f.items("after")
    if not all(isinstance(a, str) and is_task_id(a) for a in found):
        f.bad.append(f.prefix + "after")
    return tuple(a for a in found if isinstance(a, str) and is_task_id(a))[:MAX_AFTER]


def _timeout(f: Fields) -> float | None:
    found = f.data.get("timeout")
    if found is None:
        return None
    return float(found) if is_duration(found) and found > 0 else f.ignore("timeout", None)
