"""Work coming in: instruction files from `codexd start` and from the watched spool folder.

A spool file is claimed by renaming it into a staging folder beside the tasks, so each
file becomes exactly one task even when two scans race. A refused file moves to
`rejected/` with a `.error` file beside it. Nothing is deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from codexd import frontmatter, locations, store, taskid
from codexd.errors import CodexdError, InvalidInput
from codexd.health import STRIKES
from codexd.records import Cursor, TaskStatus
from codexd.states import TaskState
from codexd.store import TaskStore

log = structlog.get_logger()
REJECTED = "rejected"
IGNORED_SUFFIXES = (".tmp", ".part")
SETTLE_SECONDS = 0.25  # without leases: a file modified more recently may still be being written
WRITER_RECHECK = 0.1  # seconds before a file still open for writing is looked at again


def ensure_private_dir(path: Path) -> None:
    """Create `path` 0700; refuse one that others could write into or that is not ours."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise CodexdError(
            f"spool folder {path} belongs to another user (uid {info.st_uid}): use a folder of your own"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CodexdError(f"spool folder {path} is writable by others: run `chmod 700 {path}`")


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
    cwd = None
    if "cwd" in parsed.fields:
        text = str(parsed.fields["cwd"])
        cwd = locations.expand(base / text if base and not text.startswith(("~", "/")) else text)
        if not cwd.is_dir():
            raise InvalidInput(f"cwd {cwd} is not an existing folder: create it or fix cwd")
    return Checked(parsed.fields, parsed.body, kind, cwd)


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
            except OSError:
                raise  # the folder's trouble (a full disk): the daemon logs it and scans again later
            except Exception as exc:  # a bug with one file stops neither the others nor the daemon
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
            return None
        if stat.S_ISREG(info.st_mode):
            busy_until = being_written(path, info)
            if busy_until is not None:
                return busy_until  # look again then
        try:
            raw = self._read(path, info)
            checked = check(raw, self.known_types)
            return self._accept(path, raw, checked)
        except InvalidInput as exc:
            self.reject(path, str(exc))
            return None

    def _read(self, path: Path, info: os.stat_result) -> bytes:
        if stat.S_ISLNK(info.st_mode):
            raise InvalidInput("the file is a symbolic link: put the file itself into the spool")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput("not a regular file: only .md instruction files are taken")
        if not path.name.endswith(".md"):
            raise InvalidInput(f"only .md instruction files are taken: rename it to {path.stem}.md")
        return read_instruction_file(path, follow=False)  # checked again on the opened file

    def _task_id(self, path: Path, checked: Checked) -> str:
        wanted = checked.fields.get("task_id")
        if wanted is None:
            return taskid.unique(taskid.from_name(path.name), self.tasks.is_taken)
        if self.tasks.is_taken(wanted):
            raise InvalidInput(f"task id {wanted!r} is already taken: choose another task_id")
        return str(wanted)

    def _accept(self, path: Path, raw: bytes, checked: Checked) -> TaskStatus | None:
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
            target.write_bytes(raw)
            path.unlink()
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
                checked = check(instructions.read_bytes(), self.known_types)
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
            self.reject(path, f"internal error: {type(exc).__name__}: {exc} (see the daemon log)")

    def reject(self, path: Path, reason: str, name: str | None = None) -> None:
        rejected = self.dir / REJECTED
        rejected.mkdir(mode=0o700, exist_ok=True)
        name = (name or path.name).replace("\n", "?")
        target = rejected / name
        n = 1
        while target.exists() or target.is_symlink():
            n += 1
            target = rejected / f"{name}.{n}"
        os.rename(path, target)
        note = f"{self.now()} refused {path.name!r}: {reason}\n"
        store.write_atomic(target.with_name(target.name + ".error"), note.encode())


def read_instruction_file(path: Path, follow: bool = True) -> bytes:
    """An instruction file's bytes: a regular file under the size cap, checked on the opened
    descriptor (never the path checked and then opened) and read no further than the cap."""
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
        return _read_capped(fd, str(path))
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
