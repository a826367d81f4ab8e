"""New lines of a task's events.jsonl, reports.jsonl and stderr.log, turned into its next record.

Reads from the cursor in status.json, so a new daemon carries on where the last stopped.
One step reads at most a budget of each file, so a flood of output is taken in bounded
steps (the loop comes back at once for the rest) and other tasks get their turn between.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from codexd import jsonlines
from codexd.clock import iso
from codexd.codex.events import apply_event, apply_report, from_stderr
from codexd.daemon import rollout
from codexd.tasks import account, store
from codexd.tasks.frozen import replace
from codexd.tasks.records import Cursor, Progress, TaskStatus, Usage
from codexd.tasks.usage import RUNS_KEPT, Price, Run, cost_of

STEP_BYTES = 1 << 20  # of each file per step: a backlog of 1 GB is read in 1 MiB steps
STEP_LINES = 4000  # and at most this many lines

# What a line too long to keep whole (a command's output of many MB) still says: the event's
# type, its item's type and command near its start; the exit code and status at its end.
_KIND = re.compile(rb'^\s*\{\s*"type"\s*:\s*"([^"\\]{1,100})"')
_ITEM = re.compile(
    rb'"item"\s*:\s*\{\s*(?:"id"\s*:\s*"[^"\\]*"\s*,\s*)?"type"\s*:\s*"([^"\\]{1,100})"'
    rb'(?:\s*,\s*"command"\s*:\s*("(?:[^"\\]|\\.){0,4000}"))?'
)
_END = re.compile(rb'"exit_code"\s*:\s*(-?\d{1,10}|null)\s*,\s*"status"\s*:\s*"([a-z_]{1,40})"\s*\}\s*\}\s*$')


@dataclass(frozen=True)
class Advance:
    status: TaskStatus  # with progress, thread id and cursor moved on
    lines: list[str]  # for progress.log
    active: bool  # real progress was seen (client retry chatter is not)
    more: bool = False  # the budget ran out before the end: come back at once


@dataclass
class _Step:
    """What one step has found so far."""

    progress: Progress
    thread: str | None
    cursor: Cursor
    lines: list[str]
    now: datetime | None = None
    active: bool = False
    more: bool = False


def advance(
    task_dir: Path,
    status: TaskStatus,
    prices: Mapping[str, Price] | None = None,
    now: datetime | None = None,
    ended: bool = False,
) -> Advance | None:
    """What the task's files say past the cursor (up to a budget); None when nothing new was written.

    With `prices` (the settings' `[prices]`), the task's use is priced whenever it changes;
    `now` stamps the runs that began."""
    step = _Step(status.progress, status.thread_id, status.daemon, [], now)
    end = status.daemon.events  # the cursor is copied once a step, not once a line: that was most of its cost
    for line in _budget(task_dir / store.EVENTS, end, step):
        _take_event(step, event_of(line))
        end = line.end
    if end != step.cursor.events:
        step.cursor = replace(step.cursor, events=end)
    for line in _budget(task_dir / store.REPORTS, step.cursor.reports, step):
        report = (
            jsonlines.object_of(line.head) if not line.cut else None
        )  # `codexd progress` writes short lines
        if report is not None:
            update = apply_report(step.progress, report)
            step.progress = update.progress
            step.lines += update.lines
            step.active = True
        step.cursor = replace(step.cursor, reports=line.end)
    if step.cursor.events != status.daemon.events:  # Codex goes on after what it says there
        _take_stderr(task_dir, step)
    if status.is_active and step.thread and not step.more:  # the runs begun so far are known first
        _take_rollout(step, step.thread, task_dir.parent, ended)
    if step.cursor == status.daemon:
        return None
    moved = status.with_(progress=step.progress, thread_id=step.thread, daemon=step.cursor)
    if (step.cursor.sessions, step.cursor.models) != (status.daemon.sessions, status.daemon.models):
        cost = cost_of(step.cursor.sessions, step.cursor.models, prices or {})
        moved = moved.with_(usage=Usage.total(step.cursor.sessions), cost=cost)
    return Advance(moved, step.lines, step.active, step.more)


def _budget(path: Path, offset: int, step: _Step) -> Iterator[store.Line]:
    """Lines of `path` from `offset`, up to STEP_BYTES (or one longer line) and STEP_LINES."""
    for count, line in enumerate(store.complete_lines(path, offset)):
        if count and (line.end - offset > STEP_BYTES or count >= STEP_LINES):
            step.more = True  # this line is for the next step
            return
        yield line


def _take_stderr(task_dir: Path, step: _Step) -> None:
    """What Codex says only on stderr (a question it declined for the agent). Not progress:
    its diagnostics come whether or not the work moves."""
    start = max(step.cursor.stderr, step.cursor.stderr_start)
    for line in _budget(task_dir / store.STDERR, start, step):
        step.lines += from_stderr(line.head)
        step.cursor = replace(step.cursor, stderr=line.end)


def _take_rollout(step: _Step, thread: str, tasks_root: Path, ended: bool = False) -> None:
    """The session's use so far from its rollout file: never below what is known (a turn's end);
    the account's rate limits there are kept for `codexd health`."""
    path = rollout.find(thread, again=ended)  # a run that ended is read for the last time
    if path is None:
        return
    if str(path) != step.cursor.rollout:
        step.cursor = replace(step.cursor, rollout=str(path), rollout_at=0)
    newest: dict[str, Any] | None = None
    for line in _budget(path, step.cursor.rollout_at, step):
        event = event_of(line)
        used = rollout.usage_of(event)
        known = step.cursor.sessions.get(thread)
        if used is not None and (known is None or used.total_tokens >= known.total_tokens):
            step.cursor = replace(step.cursor, sessions={**step.cursor.sessions, thread: used})
        model = rollout.model_of(event)
        if model is not None and step.cursor.models.get(thread) != model:
            step.cursor = replace(step.cursor, models={**step.cursor.models, thread: model})
        newest = account.snapshot_of(event) or newest  # a usage-limit answer's too (info null)
        step.cursor = replace(step.cursor, rollout_at=line.end)
    if newest is not None:
        account.keep(newest, tasks_root)


def _take_event(step: _Step, event: dict[str, Any] | None) -> None:
    if event is None:
        return
    update = apply_event(step.progress, event, step.thread)
    step.progress, step.thread = update.progress, update.thread_id or step.thread
    step.lines += update.lines
    step.active = step.active or not update.chatter
    if event.get("type") == "thread.started" and update.thread_id:  # a run began: its share starts here
        _run_began(step, update.thread_id)
    if update.usage is not None:  # the session's figure so far replaces its last; other sessions add
        sessions = {**step.cursor.sessions, step.thread or "": update.usage}
        step.cursor = replace(step.cursor, sessions=sessions)
    if step.cursor.streak and _work_done(event):
        step.cursor = replace(step.cursor, streak=0)  # the endpoint answered: a new failure starts afresh


def _run_began(step: _Step, thread: str) -> None:
    run = Run(iso(step.now) if step.now else None, thread, step.cursor.sessions.get(thread, Usage()))
    step.cursor = replace(step.cursor, runs=(*step.cursor.runs, run)[-RUNS_KEPT:])


def event_of(line: store.Line) -> dict[str, Any] | None:
    """The event on a line; for a line too long to keep whole, what its excerpt says."""
    return jsonlines.object_of(line.head) if not line.cut else _excerpt(line)


def _excerpt(line: store.Line) -> dict[str, Any] | None:
    kind = _KIND.match(line.head)
    if kind is None:
        return None
    event: dict[str, Any] = {"type": kind[1].decode()}
    item = _ITEM.search(line.head)
    if item is not None:
        event["item"] = {"type": item[1].decode()}
        if item[2] is not None:
            event["item"]["command"] = _json_string(item[2])
        end = _END.search(line.tail)
        if end is not None:
            event["item"]["exit_code"] = None if end[1] == b"null" else int(end[1])
            event["item"]["status"] = end[2].decode()
    return event


def _json_string(raw: bytes) -> str:
    found = jsonlines.value(raw)
    return found if isinstance(found, str) else raw.decode("utf-8", "replace").strip('"')


def _work_done(event: dict[str, Any]) -> bool:
    item = event.get("item")
    return event.get("type") == "item.completed" and isinstance(item, dict) and item.get("type") != "error"
