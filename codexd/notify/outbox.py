"""The durable outbox: one file per notice and URL, written before anything is sent.

`<tasks_dir>/.outbox/<key>.json` waits to be delivered. Delivered: a tombstone
`sent/<key>` is made, then the file goes. Given up: it moves to `failed/<key>.json` with
the reason. A key already pending, sent or failed is not queued again, so an event that
a restarted daemon announces a second time is not sent twice. The folder is private
(0700): the files hold the URLs, which are secrets.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from codexd import fields, jsonlines
from codexd.config.defaultdirs import is_task_id
from codexd.errors import StorageError
from codexd.fields import Fields
from codexd.notify.endpoints import Field, NoticeKind
from codexd.notify.redact import url_id
from codexd.tasks import store

log = structlog.get_logger()
FOLDER = ".outbox"
SENT = "sent"
FAILED = "failed"
KEEP = 7 * 24 * 3600  # tombstones and failed notices are kept this long
_KINDS = tuple(k.value for k in NoticeKind)


@dataclass(frozen=True)
class Delivery:
    """One notice on its way to one URL."""

    key: str
    task_id: str
    event: str
    url: str
    title: str
    text: str
    markdown: str
    kind: NoticeKind
    created_at: float  # epoch seconds; it expires counted from here
    attempts: int = 0
    last_error: str | None = None
    lead: str = ""
    fields: tuple[Field, ...] = ()

    @property
    def lane(self) -> str:
        return url_id(self.url)

    def to_dict(self) -> dict[str, Any]:
        plain = {"event": str(self.event), "kind": str(self.kind)}  # plain text, as read
        return {**asdict(self), **plain, "fields": [f.to_dict() for f in self.fields]}

    @classmethod
    def from_dict(cls, data: object, key: str | None = None, made: float = 0.0) -> Delivery:
        """An outbox file, perhaps edited by hand: `key` (its file's) wins over the one inside,
        `made` stands in for a `created_at` that is not a time. ValueError if it cannot be sent."""
        f = Fields(data)
        key, task_id, event, url = key or f.text("key"), f.text("task_id"), f.text("event"), f.text("url")
        if not (key and task_id and is_task_id(task_id) and event and url):
            raise ValueError("it lacks its key, task_id, event or url")
        kind = f.text("kind") or ""
        if kind not in _KINDS:
            raise ValueError(f"its kind is not one of {', '.join(_KINDS)}")
        return cls(
            key=key,
            task_id=task_id,
            event=event,
            url=url,
            title=f.text("title") or "",
            text=f.text("text") or "",
            markdown=f.text("markdown") or "",
            kind=NoticeKind(kind),
            created_at=f.number("created_at", made) or made,
            attempts=f.integer("attempts", 0, high=10**9) or 0,
            last_error=f.text("last_error"),
            lead=f.text("lead") or "",
            fields=_fields(data),
        )


def _fields(data: object) -> tuple[Field, ...]:
    """A notice's fields as written; one that is not a name and a value is left out."""
    found = []
    listed = data.get("fields") if isinstance(data, dict) else None
    for entry in listed if isinstance(listed, list) else []:
        f = Fields(entry)
        name, value = f.text("name"), f.text("value")
        if name and value is not None:
            found.append(Field(name, value, f.data.get("short") is not False))
    return tuple(found)


def _read(path: Path, key: str) -> Delivery:
    """The delivery in an outbox file; ValueError (naming why) if there is none."""
    raw = path.read_bytes()
    data = jsonlines.object_of(raw)
    if data is None:
        raise ValueError("not a JSON object")
    return Delivery.from_dict(data, key, path.stat().st_mtime)


class Outbox:
    def __init__(self, tasks_dir: Path):
        self.dir = tasks_dir / FOLDER

    def open(self) -> None:
        for folder in (self.dir, self.dir / SENT, self.dir / FAILED):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _file(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def known(self, key: str) -> bool:
        return any(
            p.exists() for p in (self._file(key), self.dir / SENT / key, self.dir / FAILED / f"{key}.json")
        )

    def put(self, delivery: Delivery) -> bool:
        """Keep it on disk; False when this notice was already queued, sent or given up."""
        if self.known(delivery.key):
            return False
        store.write_atomic(self._file(delivery.key), store.dump_json(delivery.to_dict()))
        return True

    def pending(self, broken: list[str] | None = None) -> list[Delivery]:
        """What is waiting, oldest first (after a restart: what the last daemon left).

        A file that is not a notice is left out and logged, or put in `broken` as one line."""
        found = []
        for path in self.dir.glob("[!.]*.json"):
            key = path.name.removesuffix(".json")
            if (self.dir / SENT / key).exists():
                path.unlink(missing_ok=True)  # sent just before a crash; its file outlived it
                continue
            try:
                found.append(_read(path, key))
            except (OSError, ValueError) as exc:
                if broken is None:
                    log.error("notice.unreadable", file=str(path), error=str(exc))
                else:
                    broken.append(f"{path} is not a notice ({exc}): fix or remove it")
        return sorted(found, key=lambda d: (d.created_at, d.key))

    def failed(self) -> list[dict[str, Any]]:
        """Notices given up on, each with the `reason`; files that are not one are left out."""
        found = []
        for path in (self.dir / FAILED).glob("[!.]*.json"):
            with contextlib.suppress(OSError, ValueError):
                data = jsonlines.object_of(path.read_bytes()) or {}
                at = fields.number(data.get("given_up_at"))
                why = {"given_up_at": at, "reason": fields.text(data.get("reason"))}
                found.append({**_read(path, path.name.removesuffix(".json")).to_dict(), **why})
        return sorted(found, key=lambda d: (d["created_at"], d["key"]))

    def attempted(self, delivery: Delivery, error: str) -> Delivery:
        tried = replace(delivery, attempts=delivery.attempts + 1, last_error=error)
        with contextlib.suppress(StorageError):  # the count is a courtesy; the notice is on disk
            store.write_atomic(self._file(tried.key), store.dump_json(tried.to_dict()))
        return tried

    def delivered(self, delivery: Delivery) -> None:
        (self.dir / SENT / delivery.key).touch()
        self._file(delivery.key).unlink(missing_ok=True)

    def give_up(self, delivery: Delivery, reason: str, now: float) -> None:
        data = {**delivery.to_dict(), "given_up_at": now, "reason": reason}
        store.write_atomic(self.dir / FAILED / f"{delivery.key}.json", store.dump_json(data))
        self._file(delivery.key).unlink(missing_ok=True)

    def prune(self, now: float, keep: float = KEEP) -> None:
        """Forget tombstones and failed notices older than `keep` seconds."""
        for folder in (self.dir / SENT, self.dir / FAILED):
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(folder):
                    with contextlib.suppress(OSError):
                        if now - entry.stat().st_mtime > keep:
                            os.unlink(entry.path)
