"""The daemon's side of the spool folder: instruction files taken, each into exactly one task.

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
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import structlog

from codexd.clock import Clock, iso
from codexd.daemon.rules import STRIKES
from codexd.errors import InvalidInput, StorageError
from codexd.tasks import intake, store, taskid
from codexd.tasks.intake import Checked, FileId
from codexd.tasks.records import Cursor, TaskStatus
from codexd.tasks.states import TaskState
from codexd.tasks.store import TaskStore
from codexd.tasks.taken import Taken

log = structlog.get_logger()
REJECTED = "rejected"
NAME_MAX = 255  # bytes in a file name
# Bytes a rejected file's name leaves for: a number after it, its note's ".error", and the
# temporary name the note is written under first (see store.write_atomic).
NAME_ROOM = len(".99999") + len(".error") + len("..4194304.abcdef.tmp")
HASH_KEPT = 12  # hex digits of a long name's hash, so that two cut names never collide
FOLDER_TROUBLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})  # not one file's
IGNORED_SUFFIXES = (".tmp", ".part")
WRITER_RECHECK = 0.1  # seconds before a file still open for writing is looked at again


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


def being_written(path: Path, info: os.stat_result, now: float) -> float | None:
    """When to look at the file again if it may still be being written (on the clock whose
    time is `now`); None if it is done."""
    writer = has_writer(path)
    if writer is not None:
        return now + WRITER_RECHECK if writer else None
    # No better sign here: recently changed means maybe. Its time is the file system's clock,
    # so its age is too; the wait is then counted on ours.
    wait = info.st_mtime + intake.SETTLE_SECONDS - time.time()
    return now + wait if wait > 0 else None


def is_ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


def new_status(task_id: str, checked: Checked, tasks: TaskStore, now: str, accepted_ns: int) -> TaskStatus:
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
        daemon=Cursor(accepted_ns=accepted_ns),
        taken=Taken.of(checked.fields, checked.body_offset),
        incidents=(),  # recorded from its start
    )


class Spool:
    """The daemon's side of the spool folder."""

    def __init__(
        self,
        spool_dir: Path,
        tasks: TaskStore,
        known_types: Iterable[str],
        clock: Clock,
        worktree_default: bool = False,  # the `worktree` setting
    ):
        self.worktree_default = worktree_default
        self.dir = spool_dir
        self.tasks = tasks
        self.known_types = frozenset(known_types)
        self.clock = clock
        self._accepted_ns = 0  # the last task's: each one's is later, even within a clock tick
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
            busy_until = being_written(path, info, self.clock.now().timestamp())
            if busy_until is not None:
                return busy_until  # look again then
        try:
            raw, identity = self._read(path, info)
            checked = intake.check(raw, self.known_types, worktree_default=self.worktree_default)
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
        return intake.read_identified(path)  # checked again on the opened file

    def _task_id(self, path: Path, checked: Checked) -> str:
        wanted = checked.fields.get("task_id")
        if wanted is None:
            return taskid.unique(taskid.from_name(path.name), self.tasks.is_taken)
        if self.tasks.is_taken(wanted):
            raise InvalidInput(f"task id {wanted!r} is already taken: choose another task_id")
        return str(wanted)

    def _known(self, task_id: str) -> bool:
        """A task, or a file in the spool that will be one (`after` may name it)."""
        return self.tasks.is_taken(task_id) or (self.dir / f"{task_id}.md").exists()

    def _accept(self, path: Path, raw: bytes, identity: FileId, checked: Checked) -> TaskStatus | None:
        task_id = self._task_id(path, checked)
        after = checked.fields.get("after", ())
        if task_id in after:  # named after its own file, which is in the spool: known, but itself
            raise InvalidInput(f"front matter after names the task itself ({task_id}): drop it from after")
        intake.check_after(after, self._known)
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
        moment = self.clock.now()
        now = iso(moment)
        self._accepted_ns = max(int(moment.timestamp() * 1e9), self._accepted_ns + 1)
        status = new_status(task_id, checked, self.tasks, now, self._accepted_ns)
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
                checked = intake.check(
                    intake.read_instruction_file(instructions, follow=False),
                    self.known_types,
                    worktree_default=self.worktree_default,
                )
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
        note = f"{iso(self.clock.now())} refused {shown!r}: {reason}\n"
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
    return stat.S_ISREG(info.st_mode) and intake.identify(info) == identity
