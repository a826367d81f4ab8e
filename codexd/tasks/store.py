"""The task folders: their files' names, and the one module that reads and writes them.

How a file is written safely is `files`; how its lines are read, `lines`. Both are named
here too, so that a caller needs `store` alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from codexd import jsonlines
from codexd.errors import BrokenRecord, StorageError, UnknownTask
from codexd.fields import unreadable
from codexd.tasks import folders, listing, taskid
from codexd.tasks.files import (
    append_line,
    dump_json,
    open_append,
    open_read,
    own_fd,
    read_text,
    size_of,
    truncate_to,
    write_atomic,
    write_output,
)
from codexd.tasks.lines import LINE_CAP, TAIL_KEPT, Line, complete_lines, lines_from, read_from
from codexd.tasks.records import TaskStatus

# Named here for callers that need `store` alone.
__all__ = [
    "LINE_CAP",
    "TAIL_KEPT",
    "Line",
    "append_line",
    "complete_lines",
    "dump_json",
    "lines_from",
    "open_append",
    "open_read",
    "own_fd",
    "read_from",
    "read_text",
    "size_of",
    "truncate_to",
    "write_atomic",
    "write_output",
]

STATUS = "status.json"
INSTRUCTIONS = "instructions.md"
PROGRESS = "progress.log"
EVENTS = "events.jsonl"
STDERR = "stderr.log"
RESULTS = "results.json"
ARTIFACTS = "artifacts"
REPORTS = "reports.jsonl"  # `codexd progress` lines, applied by the daemon
LAST_MESSAGE = "last-message.txt"  # Codex's -o output
RESUME_PROMPT = "resume-prompt.txt"  # what the last resumed run was told, on its stdin
INCOMING = ".incoming"  # staging for tasks being created
LOCK = ".daemon.lock"
REQUESTS = ".requests"  # `codexd stop` and `restart` leave a request here for the daemon
HEALTH = ".health.json"  # the daemon's last health check, for `codexd health`
REMOVING = ".removing"  # task folders being deleted (`codexd rm`), out of sight first


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


class TaskStore:
    def __init__(self, tasks_dir: Path) -> None:
        self.root = tasks_dir

    def dir(self, task_id: str) -> Path:
        return self.root / task_id

    def file(self, task_id: str, name: str) -> Path:
        return self.root / task_id / name

    def is_taken(self, task_id: str) -> bool:
        """A task, or one being created, already has this id."""
        if os.path.lexists(self.root / task_id):  # a dangling link planted there holds the name too
            return True
        staging = self.root / INCOMING
        return staging.is_dir() and any(p.name.split("~")[0] == task_id for p in staging.iterdir())

    def read_status(self, task_id: str) -> TaskStatus:
        """The task's record; BrokenRecord when its status.json cannot be one."""
        if not taskid.is_valid(task_id):
            raise UnknownTask(task_id, self.root)
        self.check_own(task_id)
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

    def check_own(self, task_id: str) -> None:
        """BrokenRecord for a task folder that is not the daemon's own: a link in its place,
        another user's folder, one others can write into. Its files are never read or run."""
        problem = folders.task_folder_problem(self.dir(task_id))
        if problem is not None:
            raise BrokenRecord(self.dir(task_id), f"not the daemon's own folder: {problem}")

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
                found.append(self._record(name, raw))
            except BrokenRecord as exc:
                if broken is None:
                    unreadable(name, str(exc))
                else:
                    broken.append(exc)
        return found

    def _record(self, name: str, raw: bytes) -> TaskStatus:
        if not raw:  # what a planted folder gives too: say why it is left out
            self.check_own(name)
        try:
            return status_from(raw)
        except ValueError as why:
            raise BrokenRecord(self.file(name, STATUS), str(why)) from None

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
            if os.path.lexists(self.root / task_id):
                return False
            raise StorageError(f"cannot create task {task_id}: {exc.strerror or exc}") from exc
        return True

    def leftovers(self) -> list[Path]:
        staging = self.root / INCOMING
        return sorted(staging.iterdir()) if staging.is_dir() else []

    def remove(self, task_id: str) -> None:
        """Delete a task's folder and its waiting requests. A link in its place is removed as
        a link (what it points to is never touched); a folder is first moved out of sight, so
        a task half deleted is never listed, then deleted without following any link in it."""
        path = self.dir(taskid.check(task_id))
        try:
            if path.is_symlink():
                path.unlink()
            elif path.exists():
                trash = self.root / REMOVING
                trash.mkdir(mode=0o700, exist_ok=True)
                gone = trash / f"{task_id}~{secrets.token_hex(4)}"
                os.rename(path, gone)
                shutil.rmtree(gone)
        except OSError as exc:
            raise StorageError(f"cannot remove task {task_id}: {exc.strerror or exc}") from exc
        requests = self.root / REQUESTS
        for request in requests.iterdir() if requests.is_dir() else ():
            if request.name.rpartition(".")[0] == task_id:
                request.unlink(missing_ok=True)
