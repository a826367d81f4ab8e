"""The branch of a task run in a git worktree, as a report tells it: its base, the commits
made on it and their diff stat (git asked when the report is made), and what was left
uncommitted. `reports` renders it."""

from __future__ import annotations

from typing import Any

from codexd.fields import Fields
from codexd.tasks import worktree
from codexd.tasks.worktree import Worktree


def branch_work(status: dict[str, Any]) -> dict[str, Any] | None:
    """A worktree task's branch, base, commits and diff stat (git asked now); None for others."""
    tree = Worktree.read(Fields(status).within("worktree"))
    return None if tree is None else {**tree.to_dict(), **worktree.describe(tree).to_dict()}


def branch_line(work: dict[str, Any]) -> str:
    """`codexd/t1 from 3f2a9c1 (worktree /path)`."""
    return f"{work['branch']} from {str(work['base'])[:12]} (worktree {work['path']})"


def branch_notes(work: dict[str, Any]) -> list[str]:
    """What the commit list leaves unsaid: older commits left out, none yet, loose changes."""
    notes = ["... and older commits"] if work["more_commits"] else []
    if not work["commits"] and not work["problem"]:
        notes.append("no commits yet")
    if work["uncommitted_files"]:
        notes.append(f"{work['uncommitted_files']} file(s) changed in the worktree and not committed")
    return notes + ([work["problem"]] if work["problem"] else [])
