"""Work coming in: instruction files from `codexd start` and from the watched spool folder.

A spool file is claimed by renaming it into a staging folder beside the tasks, so each
file becomes exactly one task even when two scans race. A refused file moves to
`rejected/` with a `.error` file beside it. Nothing is deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from codexd.config import paths
from codexd.daemon import lock
from codexd.daemon.rules import STRIKES
from codexd.errors import InvalidInput, StorageError
from codexd.tasks import folders, frontmatter, store, taskid
from codexd.tasks.records import Cursor, TaskStatus
from codexd.tasks.states import TaskState
from codexd.tasks.store import TaskStore

log = structlog.get_logger()
REJECTED = "rejected"
NAME_MAX = 255  # bytes in a file name
# Bytes a rejected file's name leaves for: a number after it, its note's ".error", and the
# temporary name the note is written under first (see store.write_atomic).
NAME_ROOM = len(".99999") + len(".error") + len("..4194304.abcdef.tmp")
HASH_KEPT = 12  # hex digits of a long name's hash, so that two cut names never collide
FOLDER_TROUBLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})  # not one file's
IGNORED_SUFFIXES = (".tmp", ".part")
SETTLE_SECONDS = 0.25  # without leases: a file modified more recently may still be being written
WRITER_RECHECK = 0.1  # seconds before a file still open for writing is looked at again
FileId = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns: which file was read


def ensure_private_dir(path: Path) -> None:
    """Create the spool 0700; refuse one that others could write into or that is not ours."""
    folders.ensure_private(path, "spool folder")


def has_writer(path: Path) -> bool | None:
    """Is the file open for writing anywhere? None where the system cannot say.

    On Linux a read lease is refused (EAGAIN) while any process has the file open for
    writing, so a finished file is taken at once and one still being copied waits.
    """
    if not hasattr(fcntl, "F_SETLEASE"):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError as exc:
        return True if exc.errno == errno.EAGAIN else None  # not ours, or a filesystem without leases
    finally:
        os.close(fd)
    return False


def being_written(path: Path, info: os.stat_result) -> float | None:
    """When to look at the file again if it may still be being written; None if it is done."""
    writer = has_writer(path)
    if writer is not None:
        return time.time() + WRITER_RECHECK if writer else None
    settled_at = info.st_mtime + SETTLE_SECONDS  # no better sign here: recently changed means maybe
    return settled_at if settled_at > time.time() else None


def is_ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


@dataclass(frozen=True)
class Checked:
    """An instruction file that passed every check, with what the task needs."""

    fields: dict[str, Any]
    body: str
    kind: str
    cwd: Path | None


def check(raw: bytes, known_types: Iterable[str], base: Path | None = None) -> Checked:
    """Everything about an instruction file that can be judged without the task folder."""
    parsed = frontmatter.parse(raw)
    kind = str(parsed.fields.get("type", "generic"))
    known = sorted(set(known_types))
    if kind not in known:
        raise InvalidInput(
            f"unknown task type {kind!r}: known types are {', '.join(known)} (add [types.{kind}])"
        )
    cwd = _cwd(str(parsed.fields["cwd"]), base) if "cwd" in parsed.fields else None
    return Checked(parsed.fields, parsed.body, kind, cwd)


def _cwd(text: str, base: Path | None) -> Path:
    """`cwd` as a folder: relative to `base` (the caller's folder for `codexd start`); a spool
    file has no folder of its own to be relative to (the daemon's would be a guess)."""
    if not text.startswith(("~", "/")):
        if base is None:
            raise InvalidInput(
                f"cwd {text!r} is relative: a spool file's cwd must be absolute or start with ~"
            )
        text = str(base / text)
    cwd = paths.expand(text)
    if not cwd.is_dir():
        raise InvalidInput(f"cwd {cwd} is not an existing folder: create it or fix cwd")
    return cwd


def new_status(task_id: str, checked: Checked, tasks: TaskStore, now: str) -> TaskStatus:
    timeout = checked.fields.get("stall_timeout")
    return TaskStatus(
        task_id=task_id,
        type=checked.kind,
        status=TaskState.QUEUED,
        created_at=now,
        updated_at=now,
        log_file=str(tasks.file(task_id, store.PROGRESS)),
        cwd=str(checked.cwd or tasks.dir(task_id)),
        stall_timeout=float(timeout) if timeout is not None else None,
        daemon=Cursor(accepted_ns=time.time_ns()),
    )


class Spool:
    """The daemon's side of the spool folder."""

    def __init__(self, spool_dir: Path, tasks: TaskStore, known_types: Iterable[str], now: Callable[[], str]):
        self.dir = spool_dir
        self.tasks = tasks
        self.known_types = frozenset(known_types)
        self.now = now
        self._strikes: dict[str, int] = {}  # file name -> unexpected errors in a row
        self._folders_seen: set[str] = set()  # folders left alone, logged once each

    def candidates(self) -> list[Path]:
        try:
            entries = sorted(os.scandir(self.dir), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        return [Path(e.path) for e in entries if not is_ignored(e.name) and e.name != REJECTED]

    def scan(self) -> tuple[list[TaskStatus], float | None]:
        """Take every ready file; also say when to look again for files still being written."""
        accepted, retry_at = [], None
        for path in self.candidates():
            try:
                result = self.take(path)
            except FileNotFoundError:
                continue  # gone meanwhile: taken by someone else or moved away
            except Exception as exc:  # one file's trouble stops neither the others nor the daemon
                if isinstance(exc, OSError) and exc.errno in FOLDER_TROUBLE:
                    raise  # the folder's (a full disk): the daemon logs it and scans again later
                self._unexpected(path, exc)
                continue
            if isinstance(result, float):
                retry_at = result if retry_at is None else min(retry_at, result)
            elif result is not None:
                accepted.append(result)
        return accepted, retry_at

    def take(self, path: Path) -> TaskStatus | float | None:
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode):
            self._folder(path)
            return None
        if stat.S_ISREG(info.st_mode):
            busy_until = being_written(path, info)
            if busy_until is not None:
                return busy_until  # look again then
        try:
            raw, identity = self._read(path, info)
            checked = check(raw, self.known_types)
            return self._accept(path, raw, identity, checked)
        except InvalidInput as exc:
            self.reject(path, str(exc))
            return None

    def _folder(self, path: Path) -> None:
        """A folder named like an instruction file is refused; others (a user's drafts/) are left."""
        if path.name.endswith(".md"):
            self.reject(path, "it is a folder, not an instruction file: put the .md file in its place")
        elif path.name not in self._folders_seen:
            self._folders_seen.add(path.name)
            log.info("spool.folder_left_alone", folder=str(path), why="only .md files are taken")

    def _read(self, path: Path, info: os.stat_result) -> tuple[bytes, FileId]:
        if stat.S_ISLNK(info.st_mode):
            raise InvalidInput("the file is a symbolic link: put the file itself into the spool")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput("not a regular file: only .md instruction files are taken")
        if not path.name.endswith(".md"):
            raise InvalidInput(f"only .md instruction files are taken: rename it to {path.stem}.md")
        return read_identified(path)  # checked again on the opened file

    def _task_id(self, path: Path, checked: Checked) -> str:
        wanted = checked.fields.get("task_id")
        if wanted is None:
            return taskid.unique(taskid.from_name(path.name), self.tasks.is_taken)
        if self.tasks.is_taken(wanted):
            raise InvalidInput(f"task id {wanted!r} is already taken: choose another task_id")
        return str(wanted)

    def _accept(self, path: Path, raw: bytes, identity: FileId, checked: Checked) -> TaskStatus | None:
        task_id = self._task_id(path, checked)
        staging = self.tasks.stage(task_id)
        target = staging / store.INSTRUCTIONS
        try:
            os.rename(path, target)  # the claim: only one scan can win it
        except FileNotFoundError:
            staging.rmdir()
            return None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            target.write_bytes(raw)  # what was read and checked, whatever is at the path now
            path.unlink()
        else:
            if not is_file(target, identity):  # swapped (for a link, say) after it was read
                why = "it changed while it was being taken: drop it into the spool again, whole"
                self.reject(target, why, name=path.name)
                staging.rmdir()
                return None
        return self.finish(staging, task_id, checked)

    def finish(self, staging: Path, task_id: str, checked: Checked) -> TaskStatus | None:
        now = self.now()
        status = new_status(task_id, checked, self.tasks, now)
        (staging / store.PROGRESS).unlink(missing_ok=True)  # our own line, from an interrupted try
        size = store.append_line(staging / store.PROGRESS, f"{now} Queued ({checked.kind})")
        status = status.with_(daemon=replace(status.daemon, log=size))
        store.write_atomic(staging / store.STATUS, store.dump_json(status.to_dict()))
        if self.tasks.publish(staging, task_id):
            return status
        self.reject(
            staging / store.INSTRUCTIONS, f"task id {task_id!r} is already taken", name=f"{task_id}.md"
        )
        shutil.rmtree(staging, ignore_errors=True)  # only our own files are left in it
        return None

    def recover(self) -> list[TaskStatus]:
        """Finish tasks whose creation a crash interrupted; nothing half-made stays hidden."""
        done = []
        for staging in self.tasks.leftovers():
            task_id = staging.name.split("~")[0]
            instructions = staging / store.INSTRUCTIONS
            if not instructions.exists():
                with contextlib.suppress(OSError):
                    staging.rmdir()
                continue
            try:
                checked = check(read_instruction_file(instructions, follow=False), self.known_types)
                status = self.finish(staging, task_id, checked)
            except InvalidInput as exc:
                self.reject(instructions, str(exc), name=f"{task_id}.md")
                continue
            if status:
                done.append(status)
        return done

    def _unexpected(self, path: Path, exc: Exception) -> None:
        """Logged with its traceback; the same file failing STRIKES times is rejected, saying why."""
        strikes = self._strikes[path.name] = self._strikes.get(path.name, 0) + 1
        if strikes == 1:
            log.error("spool.internal_error", file=str(path), exc_info=exc)
        if strikes >= STRIKES:
            del self._strikes[path.name]
            try:
                self.reject(path, f"internal error: {type(exc).__name__}: {exc} (see the daemon log)")
            except Exception as again:  # it stays in the spool, and is tried again
                log.error("spool.reject_failed", file=str(path), error=str(again))

    def reject(self, path: Path, reason: str, name: str | None = None) -> None:
        rejected = self.dir / REJECTED
        rejected.mkdir(mode=0o700, exist_ok=True)
        shown = name or path.name
        name = rejected_name(shown)
        target = rejected / name
        n = 1
        while any(os.path.lexists(p) for p in (target, f"{target}.error")):
            n += 1
            target = rejected / f"{name}.{n}"
        os.rename(path, target)
        note = f"{self.now()} refused {shown!r}: {reason}\n"
        try:
            store.write_atomic(Path(f"{target}.error"), note.encode("utf-8", "backslashreplace"))
        except StorageError as exc:  # the file is out of the way all the same: the log says why
            log.error("spool.note_failed", file=str(target), reason=reason, error=str(exc))


def rejected_name(name: str) -> str:
    """A name in rejected/ with room for its note: newlines shown as '?', and a long name cut at
    a character boundary, with a short hash of the whole so that two cut names never collide."""
    raw = os.fsencode(name.replace("\n", "?"))
    limit = NAME_MAX - NAME_ROOM
    if len(raw) <= limit:
        return os.fsdecode(raw)
    cut = limit - HASH_KEPT - 1
    while cut > 0 and raw[cut] & 0xC0 == 0x80:  # never inside a UTF-8 character
        cut -= 1
    return f"{os.fsdecode(raw[:cut])}~{hashlib.sha256(raw).hexdigest()[:HASH_KEPT]}"


def is_file(path: Path, identity: FileId) -> bool:
    """Is `path` (never followed) still the very regular file that was read?"""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and identify(info) == identity


def identify(info: os.stat_result) -> FileId:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def read_instruction_file(path: Path, follow: bool = True) -> bytes:
    """An instruction file's bytes: a regular file under the size cap, checked on the opened
    descriptor (never the path checked and then opened) and read no further than the cap."""
    return _read_checked(path, follow)[0]


def read_identified(path: Path) -> tuple[bytes, FileId]:
    """A spool file's bytes, never through a link, and which file they were read from: the
    claim checks that what it moved is that file still."""
    return _read_checked(path, follow=False)


def _read_checked(path: Path, follow: bool) -> tuple[bytes, FileId]:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: a FIFO opens at once, to be refused below
    except FileNotFoundError:
        raise InvalidInput(f"instruction file {path} does not exist: check the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise InvalidInput("the file is a symbolic link: put the file itself into the spool") from None
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InvalidInput(f"{path} is a folder: pass the instruction file itself")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"{path} is not a regular file (a device, FIFO or socket): save it to a file")
        _check_size(info.st_size)
        return _read_capped(fd, str(path)), identify(info)
    finally:
        os.close(fd)


def read_stdin() -> bytes:
    """Instructions from standard input, read no further than the size cap."""
    try:
        os.fstat(0)
    except OSError:
        raise InvalidInput("stdin is closed: pipe the instructions in, or pass --instructions FILE") from None
    return _read_capped(0, "stdin")


def _check_size(size: int) -> None:
    if size > frontmatter.MAX_BYTES:
        raise InvalidInput(f"file is {size} bytes, over the 1 MiB limit: shorten it")


def _read_capped(fd: int, name: str) -> bytes:
    """At most one byte more than the cap, so that an endless source is refused, not read."""
    chunks: list[bytes] = []
    left = frontmatter.MAX_BYTES + 1
    try:
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise InvalidInput(f"cannot read {name}: {exc.strerror}") from None
    if left <= 0:
        raise InvalidInput(f"{name} is over the 1 MiB limit of instructions: shorten it")
    return b"".join(chunks)


def _spool_taken(tasks: TaskStore, spool_dir: Path) -> Callable[[str], bool]:
    return lambda task_id: tasks.is_taken(task_id) or (spool_dir / f"{task_id}.md").exists()


def submit(
    raw: bytes,
    source_name: str,
    *,
    tasks: TaskStore,
    spool_dir: Path,
    known_types: Iterable[str],
    overrides: dict[str, Any],
) -> str:
    """Write a checked instruction file into the spool atomically; returns the task id."""
    parsed = frontmatter.parse(raw)
    fields = {**parsed.fields, **{k: v for k, v in overrides.items() if v is not None}}
    fields.setdefault("cwd", os.getcwd())
    body = parsed.body
    checked = check(frontmatter.render(fields, body), known_types, base=Path.cwd())
    fields["cwd"] = str(checked.cwd)
    ensure_private_dir(spool_dir)
    _check_holder(spool_dir, tasks.root)
    taken = _spool_taken(tasks, spool_dir)
    explicit = fields.get("task_id")
    if explicit is not None and taken(explicit):
        raise InvalidInput(f"task id {explicit!r} is already taken: choose another with --task-id")
    base = explicit or taskid.from_name(source_name)
    while True:
        task_id = explicit or taskid.unique(base, taken)
        if _place(spool_dir, task_id, frontmatter.render({**fields, "task_id": task_id}, body)):
            return str(task_id)
        if explicit:
            raise InvalidInput(f"task id {explicit!r} is already taken: choose another with --task-id")


def _check_holder(spool_dir: Path, tasks_dir: Path) -> None:
    """A task is never handed to the daemon of another tasks_dir through a shared spool."""
    holder = lock.spool_holder(spool_dir)
    if holder is None or not holder.tasks_dir or holder.tasks_dir == os.path.realpath(tasks_dir):
        return
    raise InvalidInput(
        f"the spool {spool_dir} is taken by the codexd daemon pid {holder.pid} of tasks_dir "
        f"{holder.tasks_dir}, not {tasks_dir}: the task would run there; give each tasks_dir its own "
        "spool_dir (spool_dir in the settings, or CODEXD_SPOOL_DIR)"
    )


def _place(spool_dir: Path, task_id: str, data: bytes) -> bool:
    """Write `<id>.md` whole, or not at all; False when that name exists already."""
    tmp = spool_dir / f".{task_id}.{os.getpid()}.tmp"
    store.write_atomic(tmp, data)
    past = time.time() - 2 * SETTLE_SECONDS  # fsynced and complete: the daemon need not wait
    os.utime(tmp, (past, past))
    try:
        os.link(tmp, spool_dir / f"{task_id}.md")  # unlike rename, never replaces a file
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True
