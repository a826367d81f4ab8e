"""The one module that reads and writes task directories.

Every whole-file write is atomic (temp file, fsync, rename), so a reader never sees a
torn status.json. Appends (progress.log, reports.jsonl) are single `write` calls on an
O_APPEND descriptor, so concurrent writers never interleave within a line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codexd import jsonlines, listing, taskid
from codexd.errors import BrokenRecord, StorageError, UnknownTask
from codexd.fields import unreadable
from codexd.records import TaskStatus

STATUS = "status.json"
INSTRUCTIONS = "instructions.md"
PROGRESS = "progress.log"
EVENTS = "events.jsonl"
STDERR = "stderr.log"
RESULTS = "results.json"
ARTIFACTS = "artifacts"
REPORTS = "reports.jsonl"  # `codexd progress` lines, applied by the daemon
LAST_MESSAGE = "last-message.txt"  # Codex's -o output
INCOMING = ".incoming"  # staging for tasks being created
LOCK = ".daemon.lock"
REQUESTS = ".requests"  # `codexd stop` and `restart` leave a request here for the daemon
HEALTH = ".health.json"  # the daemon's last health check, for `codexd health`


_KINDS = {
    list: "a JSON array",
    str: "a JSON string",
    int: "a number",
    float: "a number",
    bool: "true or false",
}


def status_from(raw: bytes) -> TaskStatus:
    """The record in a status.json's bytes; ValueError saying why there is none."""
    data = jsonlines.value(raw)
    if data is jsonlines.NOT_JSON:
        raise ValueError("not JSON")
    if not isinstance(data, dict):
        raise ValueError(f"{_KINDS.get(type(data), 'a JSON value')}, not a JSON object")
    return TaskStatus.from_dict(data)


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix.

    `durable` also flushes it to the disk first (fsync), so that even a power cut leaves
    the old or the new file: the cost of most of a routine write, so progress skips it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc


def append_line(path: Path, line: str) -> int:
    """Append one line (or several joined by newlines); returns the file's size after it."""
    data = (line.rstrip("\n") + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot append to {path}: {exc.strerror or exc}") from exc


def truncate_to(path: Path, size: int) -> bool:
    """Cut `path` back to `size` bytes if it is longer; True when something was cut."""
    try:
        if path.stat().st_size <= size:
            return False
        os.truncate(path, size)
    except FileNotFoundError:
        return False
    return True


def dump_json(data: Any) -> bytes:
    """Indented UTF-8 JSON; a non-finite number is written as null (JSON has no NaN)."""
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), indent=2, ensure_ascii=False, allow_nan=False)
    # A lone surrogate cannot be UTF-8: written as its JSON escape, it reads back the same.
    return (text + "\n").encode("utf-8", "backslashreplace")


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


READ_LIMIT = 1 << 20  # bytes read at a time when following a file


def read_from(path: Path, offset: int, limit: int = READ_LIMIT) -> bytes:
    """Up to `limit` bytes of `path` from `offset`; b"" when there is nothing (yet)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""


def complete_lines(path: Path, offset: int) -> Iterator[tuple[bytes, int]]:
    """Whole lines after `offset`, each with the offset just past it; a partial last line waits."""
    if size_of(path) <= offset:
        return  # the common case when following: one stat, no open
    while True:
        data = read_from(path, offset)
        cut = data.rfind(b"\n")
        if cut < 0:
            return
        for raw in data[: cut + 1].splitlines(keepends=True):
            offset += len(raw)
            yield raw, offset
        if len(data) < READ_LIMIT:
            return


def lines_from(path: Path, offset: int) -> Iterator[bytes]:
    with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
        f.seek(offset)
        yield from f


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class TaskStore:
    def __init__(self, tasks_dir: Path) -> None:
        self.root = tasks_dir

    def dir(self, task_id: str) -> Path:
        return self.root / task_id

    def file(self, task_id: str, name: str) -> Path:
        return self.root / task_id / name

    def is_taken(self, task_id: str) -> bool:
        """A task, or one being created, already has this id."""
        if (self.root / task_id).exists():
            return True
        staging = self.root / INCOMING
        return staging.is_dir() and any(p.name.split("~")[0] == task_id for p in staging.iterdir())

    def read_status(self, task_id: str) -> TaskStatus:
        """The task's record; BrokenRecord when its status.json cannot be one."""
        if not taskid.is_valid(task_id):
            raise UnknownTask(task_id, self.root)
        path = self.file(task_id, STATUS)
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise UnknownTask(task_id, self.root) from None
        except OSError as exc:
            raise BrokenRecord(path, exc.strerror or str(exc)) from None
        try:
            return status_from(raw)
        except ValueError as exc:
            raise BrokenRecord(path, str(exc)) from None

    def read_status_dict(self, task_id: str) -> dict[str, Any]:
        """status.json as the record reads it: every field of its type, ill-typed ones defaulted."""
        return self.read_status(task_id).to_dict()

    def write_status(self, status: TaskStatus, durable: bool = True) -> None:
        write_atomic(self.file(status.task_id, STATUS), dump_json(status.to_dict()), durable)

    def write_results(self, task_id: str, results: dict[str, Any]) -> None:
        write_atomic(self.file(task_id, RESULTS), dump_json(results))

    def read_results(self, task_id: str) -> dict[str, Any] | None:
        """results.json; BrokenRecord when it is not a JSON object."""
        path = self.file(task_id, RESULTS)
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise BrokenRecord(path, exc.strerror or str(exc)) from None
        found = jsonlines.object_of(raw)
        if found is None:
            raise BrokenRecord(path, "not a JSON object")
        return found

    def all_records(self, broken: list[BrokenRecord] | None = None) -> list[TaskStatus]:
        """Every task's record. One that cannot be read is left out: put in `broken` if given,
        else logged (the daemon carries on with the others)."""
        found = []
        for name, raw in listing.named_status_files(str(self.root)):
            try:
                found.append(status_from(raw))
            except ValueError as why:
                exc = BrokenRecord(self.file(name, STATUS), str(why))
                if broken is None:
                    unreadable(name, str(exc))
                else:
                    broken.append(exc)
        return found

    def all_statuses(self, broken: list[BrokenRecord] | None = None) -> list[dict[str, Any]]:
        return [status.to_dict() for status in self.all_records(broken)]

    def stage(self, task_id: str) -> Path:
        """A private folder in which a new task is put together before it appears."""
        staging = self.root / INCOMING / f"{task_id}~{secrets.token_hex(4)}"
        staging.mkdir(parents=True, mode=0o700)
        return staging

    def publish(self, staging: Path, task_id: str) -> bool:
        """Make a staged task visible under its id; False when the id is taken."""
        (staging / ARTIFACTS).mkdir(exist_ok=True)
        try:
            os.rename(staging, self.root / task_id)
        except OSError as exc:
            if (self.root / task_id).exists():
                return False
            raise StorageError(f"cannot create task {task_id}: {exc.strerror or exc}") from exc
        return True

    def leftovers(self) -> list[Path]:
        staging = self.root / INCOMING
        return sorted(staging.iterdir()) if staging.is_dir() else []
