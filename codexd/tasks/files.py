"""Task files on disk, touched safely: atomic replacement, appends that never interleave,
and never a write or read through a symbolic link planted in a task's folder.

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
from pathlib import Path
from typing import Any, BinaryIO

from codexd.errors import InvalidInput, StorageError
from codexd.present.shown import json_safe


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
    """Indented UTF-8 JSON; a non-finite number is written as null (JSON has no NaN), and the
    controls a terminal obeys as escapes (`cat status.json` is safe)."""
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), indent=2, ensure_ascii=False, allow_nan=False)
    # A lone surrogate cannot be UTF-8: written as its JSON escape, it reads back the same.
    return (json_safe(text) + "\n").encode("utf-8", "backslashreplace")


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


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
