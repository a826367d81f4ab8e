"""One daemon per tasks folder, and one per spool: flocks held for the daemon's life.

The tasks folder's lock holds the daemon's pid; the spool's holds its pid and its tasks_dir,
so that a second daemon, or `codexd start` for another tasks_dir, can say whose it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import NamedTuple

from codexd.errors import CodexdError
from codexd.tasks import store

SPOOL_LOCK = ".daemon.lock"  # in the spool: a dot name, which its scan ignores


class Holder(NamedTuple):
    """The daemon that holds a spool."""

    pid: int
    tasks_dir: str  # resolved; "" when it could not be read


class _Flock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def take(self, content: bytes) -> bool:
        """Hold the lock with `content` written in it; False when another process holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:  # a link or a folder in its place, say
            why = exc.strerror or exc
            raise CodexdError(f"cannot open the lock file {self.path} ({why}): remove it") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, content)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class DaemonLock(_Flock):
    def __init__(self, tasks_dir: Path) -> None:
        super().__init__(tasks_dir / store.LOCK)

    def acquire(self) -> None:
        if not self.take(f"{os.getpid()}\n".encode()):
            holder = running_pid(self.path.parent)
            raise CodexdError(
                f"another codexd daemon (pid {holder}) already runs for {self.path.parent}; "
                "stop it first or use another tasks_dir"
            )


class SpoolLock(_Flock):
    def __init__(self, spool_dir: Path, tasks_dir: Path) -> None:
        super().__init__(spool_dir / SPOOL_LOCK)
        self.tasks_dir = tasks_dir

    def acquire(self) -> None:
        mine = {"pid": os.getpid(), "tasks_dir": os.path.realpath(self.tasks_dir)}
        if not self.take((json.dumps(mine) + "\n").encode()):
            holder = spool_holder(self.path.parent) or Holder(-1, "")
            raise CodexdError(
                f"the spool {self.path.parent} is taken by the codexd daemon pid {holder.pid} of tasks_dir "
                f"{holder.tasks_dir or '(unknown)'}: give this daemon its own spool_dir "
                "(spool_dir in the settings, or CODEXD_SPOOL_DIR)"
            )


def _held_content(path: Path) -> bytes | None:
    """What the process holding the lock at `path` wrote in it; None when no process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 4096)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def running_pid(tasks_dir: Path) -> int | None:
    """The pid of the daemon that holds the folder, or None when no daemon runs."""
    content = _held_content(tasks_dir / store.LOCK)
    if content is None:  # the members of a team on a shared queue hold one each (codexd/queue)
        members = (_held_content(path) for path in sorted(tasks_dir.glob(".daemon.*.lock")))
        content = next((held for held in members if held is not None), None)
    if content is None:
        return None
    with contextlib.suppress(ValueError):
        return int(content.decode().strip() or 0) or -1
    return -1


def spool_holder(spool_dir: Path) -> Holder | None:
    """The daemon that holds the spool, or None when none does."""
    content = _held_content(spool_dir / SPOOL_LOCK)
    if content is None:
        return None
    try:
        data = json.loads(content)
        return Holder(int(data["pid"]), str(data["tasks_dir"]))
    except (ValueError, TypeError, KeyError):
        return Holder(-1, "")  # being written just now, or not ours: held all the same
