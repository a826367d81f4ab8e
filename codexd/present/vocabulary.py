"""The signs and words tasks are shown with, in one place: the command line, the dashboard,
reports and notices all say an outcome, a status and a finished item the same way, and
list tasks in the same order.
"""

from __future__ import annotations

from typing import Any

OUTCOME_ICONS = {"approved": "✅", "changes_requested": "⚠️", "commented": "💬", "done": "✔", "failed": "✖"}
STATUS_ICONS = {
    "completed": "✅",
    "failed": "❌",
    "cancelled": "⏹",
    "stalled": "⏸",
    "in_progress": "▶",
    "queued": "⏳",
}


def outcome_text(outcome: str) -> str:
    """`changes_requested` -> `⚠️ changes requested`."""
    return f"{OUTCOME_ICONS.get(outcome, '•')} {outcome.replace('_', ' ')}"


def outcome_label(outcome: str) -> str:
    """`changes_requested` -> `⚠️ Changes requested`: an outcome as a notice's heading."""
    name = outcome.replace("_", " ").capitalize()
    return f"{OUTCOME_ICONS[outcome]} {name}" if outcome in OUTCOME_ICONS else name


def item_line(item: dict[str, Any]) -> str:
    """`✅ #626 - toml upgrade (approved)`: one finished item, wherever it is shown."""
    outcome = item.get("outcome") or "done"
    return f"{OUTCOME_ICONS.get(outcome, '•')} {item.get('title')} ({outcome.replace('_', ' ')})"


def newest_first(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks in the order they are listed: the newest first, and of those created in the same
    second, the one the daemon accepted last (`tasks/listing.newest_first` reads the same
    two fields from the bytes of status files, for `list --json`)."""
    return sorted(tasks, key=lambda d: (d["created_at"], d["daemon"]["accepted_ns"]), reverse=True)


COMPLETED_HEADINGS = {"pr_review": "Completed PRs"}


def loud(name: str) -> str:
    """`in_progress` -> `IN PROGRESS`: a status or an outcome as the dashboard's headings say it."""
    return name.replace("_", " ").upper()


def completed_heading(task_type: str) -> str:
    """`pr_review` -> `Completed PRs`: what a task's finished items are called (`Completed` otherwise)."""
    return COMPLETED_HEADINGS.get(task_type, "Completed")


def stopwatch(seconds: float) -> str:
    """`623` -> `00:10:23`: an elapsed time as a stopwatch shows it (the hours go past 24)."""
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
