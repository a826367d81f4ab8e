"""The one module that reads and writes task directories.

Every whole-file write is atomic (temp file, fsync, rename), so a reader never sees a
torn status.json. Appends (progress.log, reports.jsonl) are single `write` calls on an
O_APPEND descriptor, so concurrent writers never interleave within a line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from codexd import jsonlines
from codexd.errors import BrokenRecord, InvalidInput, StorageError, UnknownTask
from codexd.fields import unreadable
from codexd.tasks import folders, listing, taskid
from codexd.tasks.records import TaskStatus

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


def write_atomic(path: Path, data: bytes, durable: bool = True, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix.

    `durable` also flushes it to the disk first (fsync), so that even a power cut leaves
    the old or the new file: the cost of most of a routine write, so progress skips it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if mode != 0o644:
                os.fchmod(fd, mode)
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


def write_output(path: Path, data: bytes) -> None:
    """What `-o` writes: a new file, or an existing regular one replaced whole, keeping its mode.

    Devices, FIFOs, folders and symbolic links are refused, and so is a read-only file even
    for root (whose access() says yes to everything): the mode bits decide.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    if info is not None:
        _check_output(path, info)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create the folder {path.parent}: {exc.strerror}") from None
    write_atomic(path, data, mode=0o644 if info is None else stat.S_IMODE(info.st_mode))


def _check_output(path: Path, info: os.stat_result) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise InvalidInput(f"{path} is a symbolic link: give the path of a regular file")
    if stat.S_ISDIR(info.st_mode):
        raise InvalidInput(f"{path} is a folder: give a file name inside it")
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"{path} is not a regular file (a device or a FIFO): give a file path")
    if not info.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise InvalidInput(f"{path} is read-only: choose another file or make it writable first")


def own_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """A task file the daemon owns, opened without following a symbolic link. A link planted
    in its place (so that the daemon would write the agent's text into `.bashrc`) is removed
    and the file made anew: the daemon never writes through one."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    os.unlink(path)
    return os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)


def open_append(path: Path) -> BinaryIO:
    """A task file for a child's output (events.jsonl, stderr.log): appended to, never through a link."""
    return os.fdopen(own_fd(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab")


def open_read(path: Path) -> BinaryIO:
    """A task file for reading, never through a link (one is taken for a missing file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileNotFoundError(errno.ENOENT, "a symbolic link, not the task's file", str(path)) from None
        raise
    return os.fdopen(fd, "rb")


def append_line(path: Path, line: str) -> int:
    """Append one line (or several joined by newlines); returns the file's size after it."""
    data = (line.rstrip("\n") + "\n").encode()
    try:
        fd = own_fd(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
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
        fd = own_fd(path, os.O_WRONLY)  # never a link's target (a planted one is removed)
    except FileNotFoundError:
        return False
    try:
        if os.fstat(fd).st_size <= size:
            return False
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
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
LINE_CAP = 256 * 1024  # bytes kept of one line: a Codex event says what it is near its start
TAIL_KEPT = 4 * 1024  # of those, from the end of a longer line (a command's exit code follows its output)
CHUNK = 256 * 1024  # bytes read at a time when scanning for lines
PENDING_KEPT = 32  # long unfinished lines whose scan is remembered (one per followed file at most)


def read_from(path: Path, offset: int, limit: int = READ_LIMIT) -> bytes:
    """Up to `limit` bytes of `path` from `offset`; b"" when there is nothing (yet)."""
    try:
        with open_read(path) as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""


class Line(NamedTuple):
    """One line of a file: whole, or a capped excerpt of it (its start and its end)."""

    head: bytes  # the line without its newline, or its first bytes when it is longer than LINE_CAP
    tail: bytes  # b"", or the last TAIL_KEPT bytes of a line longer than LINE_CAP
    end: int  # the offset just past its newline
    size: int  # its length without the newline

    @property
    def cut(self) -> int:
        """Bytes of the line that were not kept."""
        return self.size - len(self.head) - len(self.tail)


class _Assembly:
    """A line being put together from chunks; never more than LINE_CAP + TAIL_KEPT bytes held."""

    def __init__(self, start: int):
        self.start = start
        self.head = bytearray()
        self.tail = b""
        self.size = 0

    def add(self, piece: bytes) -> None:
        room = LINE_CAP - len(self.head)
        if room > 0:
            self.head += piece[:room]
        if len(piece) > room:
            self.tail = (self.tail + piece[max(room, len(piece) - TAIL_KEPT) :])[-TAIL_KEPT:]
        self.size += len(piece)

    def line(self, end: int) -> Line:
        if self.size <= LINE_CAP:
            return Line(bytes(self.head), b"", end, self.size)
        keep = LINE_CAP - TAIL_KEPT
        last = (bytes(self.head[keep:]) + self.tail)[-TAIL_KEPT:]
        return Line(bytes(self.head[:keep]), last, end, self.size)


class _Scan:
    """Lines out of a file read in CHUNK steps: each byte is looked at once."""

    def __init__(self, pos: int):
        self.pos = pos  # how far the file has been read
        self.part: _Assembly | None = None  # the line not finished there

    def lines(self, f: BinaryIO) -> Iterator[Line]:
        while data := f.read(CHUNK):
            *done, rest = data.split(b"\n")
            for piece in done:
                self.pos += len(piece) + 1
                yield self._line(piece)
            if rest:
                self.part = self.part or _Assembly(self.pos)
                self.part.add(rest)
                self.pos += len(rest)

    def _line(self, piece: bytes) -> Line:
        if self.part is None and len(piece) <= LINE_CAP:
            return Line(piece, b"", self.pos, len(piece))  # the usual short line, at C speed
        part = self.part or _Assembly(self.pos - len(piece) - 1)
        part.add(piece)
        self.part = None
        return part.line(self.pos)


# A long line still being written is not scanned again from its start at every step:
# where its scan stopped is kept here, by file and line start, until it is finished.
_pending: dict[tuple[str, int], _Scan] = {}


def complete_lines(path: Path, offset: int) -> Iterator[Line]:
    """Whole lines after `offset`, of any length, read in bounded chunks; a partial last line waits.

    The caller may stop at any line (a budget): nothing past it is held."""
    size = size_of(path)
    if size <= offset:
        return  # the common case when following: one stat, no open
    scan = _pending.pop((str(path), offset), None)
    if scan is None or scan.pos > size:
        scan = _Scan(offset)
    with contextlib.suppress(FileNotFoundError), open_read(path) as f:
        f.seek(scan.pos)
        yield from scan.lines(f)
    if scan.part is not None:  # the end of the file is inside a line: remember how far it was read
        _pending[(str(path), scan.part.start)] = scan
        while len(_pending) > PENDING_KEPT:
            del _pending[next(iter(_pending))]


def lines_from(path: Path, offset: int) -> Iterator[bytes]:
    """Every line from `offset` to the end (the last one even without its newline), each cut
    to its first bytes when longer than LINE_CAP: a run's events of any size in bounded memory."""
    scan = _Scan(offset)
    with contextlib.suppress(FileNotFoundError), open_read(path) as f:
        f.seek(offset)
        for line in scan.lines(f):
            yield line.head
        if scan.part is not None:
            yield scan.part.line(scan.pos).head


def read_text(path: Path) -> str | None:
    try:
        with open_read(path) as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def size_of(path: Path) -> int:
    try:
        return path.lstat().st_size  # a link is not the task's file: its target's size is not its
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
