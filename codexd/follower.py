"""New lines of a task's events.jsonl and reports.jsonl, turned into its next record.

Reads from the cursor in status.json, so a new daemon carries on where the last stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from codexd import jsonlines, store
from codexd.progress import apply_event, apply_report
from codexd.records import TaskStatus


@dataclass(frozen=True)
class Advance:
    status: TaskStatus  # with progress, thread id and cursor moved on
    lines: list[str]  # for progress.log
    active: bool  # real progress was seen (client retry chatter is not)


def advance(task_dir: Path, status: TaskStatus) -> Advance | None:
    """What the task's files say past the cursor; None when nothing new was written."""
    lines: list[str] = []
    active = False
    progress, thread, cursor = status.progress, status.thread_id, status.daemon
    for raw, end in store.complete_lines(task_dir / store.EVENTS, cursor.events):
        event = jsonlines.object_of(raw)
        if event is not None:
            update = apply_event(progress, event, thread)
            progress, thread = update.progress, update.thread_id or thread
            lines += update.lines
            active = active or not update.chatter
            if _work_done(event):
                cursor = replace(cursor, streak=0)  # the endpoint answered: a new failure starts afresh
        cursor = replace(cursor, events=end)
    for raw, end in store.complete_lines(task_dir / store.REPORTS, cursor.reports):
        report = jsonlines.object_of(raw)
        if report is not None:
            update = apply_report(progress, report)
            progress = update.progress
            lines += update.lines
            active = True
        cursor = replace(cursor, reports=end)
    if cursor == status.daemon:
        return None
    return Advance(status.with_(progress=progress, thread_id=thread, daemon=cursor), lines, active)


def _work_done(event: dict[str, Any]) -> bool:
    item = event.get("item")
    return event.get("type") == "item.completed" and isinstance(item, dict) and item.get("type") != "error"
