"""One daemon per tasks folder: an flock held for the daemon's life, with its pid inside."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from codexd import store
from codexd.errors import CodexdError


class DaemonLock:
    def __init__(self, tasks_dir: Path) -> None:
        self.path = tasks_dir / store.LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = running_pid(self.path.parent)
            raise CodexdError(
                f"another codexd daemon (pid {holder}) already runs for {self.path.parent}; "
                "stop it first or use another tasks_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def running_pid(tasks_dir: Path) -> int | None:
    """The pid of the daemon that holds the folder, or None when no daemon runs."""
    path = tasks_dir / store.LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            with contextlib.suppress(ValueError):
                return int(os.read(fd, 32).decode().strip() or 0) or -1
            return -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
