"""The one module that reads and writes task directories.

Every whole-file write is atomic (temp file, fsync, rename), so a reader never sees a
torn status.json. Appends (progress.log, reports.jsonl) are single `write` calls on an
O_APPEND descriptor, so concurrent writers never interleave within a line.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codexd import listing, taskid
from codexd.errors import StorageError, UnknownTask
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
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


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
        if not taskid.is_valid(task_id):
            raise UnknownTask(task_id, self.root)
        try:
            data = json.loads(self.file(task_id, STATUS).read_bytes())
        except FileNotFoundError:
            raise UnknownTask(task_id, self.root) from None
        return TaskStatus.from_dict(data)

    def read_status_dict(self, task_id: str) -> dict[str, Any]:
        if not taskid.is_valid(task_id):
            raise UnknownTask(task_id, self.root)
        try:
            data: dict[str, Any] = json.loads(self.file(task_id, STATUS).read_bytes())
        except FileNotFoundError:
            raise UnknownTask(task_id, self.root) from None
        return data

    def write_status(self, status: TaskStatus, durable: bool = True) -> None:
        write_atomic(self.file(status.task_id, STATUS), dump_json(status.to_dict()), durable)

    def write_results(self, task_id: str, results: dict[str, Any]) -> None:
        write_atomic(self.file(task_id, RESULTS), dump_json(results))

    def read_results(self, task_id: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.file(task_id, RESULTS).read_bytes())
        except FileNotFoundError:
            return None
        return data

    def all_statuses(self) -> list[dict[str, Any]]:
        found = []
        for raw in listing.status_files(str(self.root)):
            with contextlib.suppress(ValueError):
                found.append(json.loads(raw))
        return found

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
