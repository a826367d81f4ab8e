"""Removing ended tasks (`codexd rm`, `codexd prune`): which may go, their worktrees, their
folders (deleted by `store`).

Only an ended task (completed, failed, cancelled) is removed; a queued or running one is
refused, and the others named are removed all the same. A task run in a git worktree
(`worktree` in its status.json) has it removed with `git worktree remove`, which keeps its
branch and refuses a worktree with changes not committed: then the task stays too.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from codexd import jsonlines
from codexd.clock import parse_iso
from codexd.errors import CodexdError, InvalidInput
from codexd.tasks import store, taskid, worktree
from codexd.tasks.records import TaskStatus

GIT_TIMEOUT = 60.0
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """`7d`, `12h`, `30m`, `45s`, `2w` or plain seconds, as seconds."""
    found = _AGE.fullmatch(text.strip().lower())
    if found is None:
        raise InvalidInput(f"--older-than {text!r} is not a duration: write it like 7d, 12h, 30m or 3600")
    return float(found[1]) * _UNITS[found[2]]


def ended_at(status: TaskStatus) -> datetime:
    """When the task ended (its last change, for a record without finished_at)."""
    return parse_iso(status.finished_at or status.updated_at)


def refusal(status: TaskStatus) -> str | None:
    """Why the task may not be removed: it has not ended."""
    if status.is_terminal:
        return None
    task_id, state = status.task_id, status.status.value
    return (
        f"task {task_id} is {state}: only an ended task can be removed; `codexd stop {task_id}` "
        "cancels it (not removed)"
    )


@dataclass
class Removal:
    """What `rm` or `prune` did (or, with `dry_run`, would do): one line per task."""

    tasks: store.TaskStore
    dry_run: bool = False
    removed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # not ended, unknown, or a worktree with changes
    failed: list[str] = field(default_factory=list)  # could not be deleted (permissions, a full disk)

    def take(self, task_id: str, status: Callable[[str], TaskStatus]) -> None:
        """Remove the task if it has ended; `status(task_id)` reads its record."""
        try:
            if os.path.islink(self.tasks.dir(taskid.check(task_id))):
                self._remove(task_id, " (a link: what it points to is left alone)")
                return
            found = status(task_id)
            problem = refusal(found)
            if problem is None:
                self._remove(task_id, self._worktree(found))
        except InvalidInput as exc:
            problem = str(exc)
        except CodexdError as exc:
            self.failed.append(str(exc))
            return
        if problem is not None:
            self.refused.append(problem)

    def _remove(self, task_id: str, what: str) -> None:
        if not self.dry_run:
            self.tasks.remove(task_id)
        self.removed.append(f"{'would remove' if self.dry_run else 'removed'} {task_id}{what}")

    def _worktree(self, status: TaskStatus) -> str:
        """Its worktree removed (its branch kept); what to say of it. InvalidInput when git refuses."""
        raw = jsonlines.object_of(self.tasks.file(status.task_id, store.STATUS).read_bytes()) or {}
        tree: Any = raw.get("worktree") or self._unrecorded(status.task_id)
        path = tree.get("path") if isinstance(tree, dict) else None
        if not isinstance(path, str) or not os.path.isdir(path):
            return ""  # none, or already gone
        branch = tree.get("branch")
        kept = f", keeping its branch {branch}" if isinstance(branch, str) else ""
        if not self.dry_run:
            remove_worktree(status.task_id, path)
        return f" and its worktree {path}{kept}"

    def _unrecorded(self, task_id: str) -> dict[str, str] | None:
        """The worktree a launch made in the task folder before Codex failed to start (the
        failure's record does not name it): git must forget it too, or it stays listed."""
        path = self.tasks.dir(task_id) / worktree.FOLDER
        if not (path / ".git").is_file():
            return None
        return {"path": str(path), "branch": worktree.branch_of(task_id)}


def remove_worktree(task_id: str, path: str) -> None:
    """`git worktree remove` (never forced: changes not committed stay, and so does the task)."""
    try:
        done = subprocess.run(
            ["git", "-C", path, "worktree", "remove", path],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidInput(f"task {task_id}: cannot run git to remove its worktree {path}: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["git failed"])[-1]
        raise InvalidInput(
            f"task {task_id} not removed: git would not remove its worktree {path} ({why}); commit or "
            f"discard its changes, or run `git worktree remove --force {path}`, then remove the task"
        )
