"""A task's Codex session travels with it: its rollout file is copied into the task folder as
it grows, and put into the CODEX_HOME of the daemon that resumes the task elsewhere, so that
`codex exec resume` finds the same session there. Without a copy (Codex never wrote one, or
the machine died before it was made) the resume fails and the task starts afresh with its
progress summary, as it does after any lost session.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import structlog

from codexd.codex.agentenv import codex_home
from codexd.daemon import rollout
from codexd.tasks.records import TaskStatus
from codexd.tasks.store import TaskStore

log = structlog.get_logger()
KEPT = "session"  # in the task folder: the rollout file, and where it lies under sessions/
WHERE = "where"
CHUNK = 1 << 20


def keep(tasks: TaskStore, status: TaskStatus) -> None:
    """The task's copy brought up to date with its session's rollout file (new bytes only)."""
    thread = status.thread_id
    source = rollout.find(thread) if thread else None
    if source is None:
        return
    folder = tasks.dir(status.task_id) / KEPT
    copy = folder / source.name
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        done = copy.stat().st_size if copy.exists() else 0
        if source.stat().st_size > done:
            _append_from(source, copy, done)
            where = folder / WHERE
            relative = str(source.relative_to(codex_home(os.environ) / "sessions"))
            if not where.exists() or where.read_text() != relative:
                where.write_text(relative)
    except (OSError, ValueError) as exc:  # the next look tries again
        log.warning("queue.session_copy_failed", task_id=status.task_id, error=str(exc))


def _append_from(source: Path, copy: Path, offset: int) -> None:
    with source.open("rb") as src, copy.open("ab") as out:
        src.seek(offset)
        while chunk := src.read(CHUNK):
            out.write(chunk)


def restore(tasks: TaskStore, status: TaskStatus) -> bool:
    """The task's copy put into this daemon's CODEX_HOME (unless Codex has the session here
    already); True when the session can be resumed here."""
    thread = status.thread_id
    if not thread:
        return False
    if rollout.find(thread) is not None:
        return True
    folder = tasks.dir(status.task_id) / KEPT
    try:
        relative = Path((folder / WHERE).read_text().strip())
        if relative.is_absolute() or ".." in relative.parts or thread not in relative.name:
            return False
        target = codex_home(os.environ) / "sessions" / relative
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(folder / relative.name, target, follow_symlinks=False)
    except OSError as exc:
        log.warning("queue.session_not_restored", task_id=status.task_id, error=str(exc))
        return False
    log.info("queue.session_restored", task_id=status.task_id, thread=thread)
    return True
