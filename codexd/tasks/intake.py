"""Work coming in: instruction files checked, read capped, and written into the spool by
`codexd start`. The daemon's side of the spool is `spool`.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codexd.config import paths
from codexd.daemon import lock
from codexd.errors import InvalidInput
from codexd.tasks import folders, frontmatter, store, taskid, worktree
from codexd.tasks.records import TaskStatus
from codexd.tasks.store import TaskStore

SETTLE_SECONDS = 0.25  # without leases: a file modified more recently may still be being written
FileId = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns: which file was read


def ensure_private_dir(path: Path) -> None:
    """Create the spool 0700; refuse one that others could write into or that is not ours."""
    folders.ensure_private(path, "spool folder")


@dataclass(frozen=True)
class Checked:
    """An instruction file that passed every check, with what the task needs."""

    fields: dict[str, Any]
    body: str
    kind: str
    cwd: Path | None
    body_offset: int  # bytes before the body: where Codex's stdin starts


def check(
    raw: bytes, known_types: Iterable[str], base: Path | None = None, worktree_default: bool = False
) -> Checked:
    """Everything about an instruction file that can be judged without the task folder;
    `worktree_default` is the `worktree` setting, for a file that does not say."""
    parsed = frontmatter.parse(raw)
    kind = str(parsed.fields.get("type", "generic"))
    known = sorted(set(known_types))
    if kind not in known:
        raise InvalidInput(
            f"unknown task type {kind!r}: known types are {', '.join(known)} (add [types.{kind}])"
        )
    cwd = _cwd(str(parsed.fields["cwd"]), base) if "cwd" in parsed.fields else None
    fields = _with_worktree(parsed.fields, cwd, worktree_default)
    return Checked(fields, parsed.body, kind, cwd, parsed.body_offset)


def _with_worktree(fields: dict[str, Any], cwd: Path | None, default: bool) -> dict[str, Any]:
    """The fields with `worktree` decided (the file's, else the setting), its repository checked."""
    wanted = fields.get("worktree", default)
    if not wanted:
        if fields.get("base") is not None:
            raise InvalidInput("front matter base needs worktree = true (base is where the worktree starts)")
        return fields
    if cwd is None:
        raise InvalidInput("a worktree task needs a cwd in a git repository: add cwd to the front matter")
    worktree.repository(cwd, fields.get("base"))
    return {**fields, "worktree": True}


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
    fd, info = _open_checked(path, follow)
    try:
        return _read_capped(fd, str(path)), identify(info)
    finally:
        os.close(fd)


def _open_checked(path: Path, follow: bool) -> tuple[int, os.stat_result]:
    """The file opened, once it is known to be a regular file under the cap."""
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
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def body_offset(status: TaskStatus, path: Path) -> int:
    """Where Codex's stdin starts in the task's instructions.md `path`: recorded when it was
    taken; for a task an older codexd took, read from its front matter (capped, no link)."""
    if status.taken is None:
        return frontmatter.parse(read_instruction_file(path, follow=False)).body_offset
    os.close(_open_checked(path, follow=False)[0])  # still what Codex may be fed: no link, no FIFO
    return status.taken.body_offset


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
    worktree_default: bool = False,
) -> str:
    """Write a checked instruction file into the spool atomically; returns the task id."""
    parsed = frontmatter.parse(raw)
    fields = {**parsed.fields, **{k: v for k, v in overrides.items() if v is not None}}
    fields.setdefault("cwd", os.getcwd())
    body = parsed.body
    checked = check(frontmatter.render(fields, body), known_types, Path.cwd(), worktree_default)
    fields["cwd"] = str(checked.cwd)
    ensure_private_dir(spool_dir)
    _check_holder(spool_dir, tasks.root)
    taken = _spool_taken(tasks, spool_dir)
    check_after(fields.get("after", ()), taken)
    explicit = fields.get("task_id")
    if checked.fields.get("worktree") and checked.cwd is not None:
        taken = worktree.unbranched(taken, checked.cwd, explicit)
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


def check_after(after: Iterable[str], known: Callable[[str], bool]) -> None:
    """Every task named in `after` exists (or waits in the spool): a task never waits for
    one that was mistyped."""
    for task_id in after:
        if not known(task_id):
            raise InvalidInput(
                f"unknown task id {task_id!r} in after: no task has that id; "
                "see `codexd list` and submit that task first"
            )
