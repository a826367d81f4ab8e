"""Is this folder private and ours? The daemon's folders (tasks_dir, its requests folder, the
spool) and each task folder must belong to the daemon's user and be writable by no one else:
a folder another user can write into lets them plant work that runs as the daemon's user."""

from __future__ import annotations

import os
import stat

from codexd.errors import CodexdError

TYPE_CHECKING = False  # not typing's: `codexd list --json` (the quick path) imports this module
if TYPE_CHECKING:
    from pathlib import Path  # not imported at run time: `codexd list --json` starts fast

OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def is_planted(info: os.stat_result) -> bool:
    """Is this (lstat'ed, never followed) a link in place of a task folder, or a folder that is
    not the daemon's own (another user's, or one that others can write into)?"""
    if stat.S_ISLNK(info.st_mode):
        return True
    return stat.S_ISDIR(info.st_mode) and (info.st_uid != os.geteuid() or bool(info.st_mode & OTHERS_WRITE))


def problem(path: Path, info: os.stat_result) -> str | None:
    """What makes an existing folder not the daemon's own, with the fix; None when it is."""
    if info.st_uid != os.geteuid():
        return f"it belongs to another user, uid {info.st_uid}: use a folder of your own"
    if info.st_mode & OTHERS_WRITE:
        mode = stat.S_IMODE(info.st_mode)
        return f"it is writable by others, mode {mode:04o}: run `chmod 700 {path}`"
    return None


def ensure_private(path: Path, what: str) -> None:
    """Create `path` 0700 if missing; refuse, in one line, a folder that is not private and ours.
    (The path itself may be a link the user made: its target is the folder judged.)"""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        why = exc.strerror or exc
        raise CodexdError(f"{what} {path} cannot be used ({why}): fix it or choose another") from None
    found = problem(path, info)
    if found is not None:
        raise CodexdError(f"{what} {path} is refused: {found}")


def task_folder_problem(path: Path) -> str | None:
    """Why a task folder is not the daemon's own (never followed if it is a link); None if it is."""
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None  # nothing there: the caller's "no such task"
    except OSError as exc:
        return f"cannot be looked at: {exc.strerror or exc}"
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link in place of a task folder: remove the link"
    if not stat.S_ISDIR(info.st_mode):
        return None  # a file by that name: the reader says it is no task
    return problem(path, info)


def running_folder_problem(path: Path, known: tuple[int, int] | None) -> str | None:
    """What is wrong with a running task's folder, if anything."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"its folder {path} was removed"
    except OSError as exc:
        return f"its folder {path} cannot be read ({exc.strerror or exc})"
    if not stat.S_ISDIR(info.st_mode) or (known is not None and known != (info.st_dev, info.st_ino)):
        return f"its folder {path} was replaced"
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return f"its folder {path} cannot be read or written"
    return None
