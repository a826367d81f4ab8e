"""Codex events and the agent's own reports, turned into progress and human log lines.

Pure functions: each takes the task's progress and one event or report and returns the
new progress and the lines for progress.log. The supervisor does the writing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from codexd.records import Item, Progress

_WRAPPED = re.compile(
    r"""^(?:/usr)?/bin/(?:ba|z|da)?sh -l?c (?:'(?P<single>.*)'|"(?P<double>.*)")$""", re.DOTALL
)
_CHATTER = re.compile(r"^\s*(Reconnecting|Retrying)\b", re.IGNORECASE)
MAX_TEXT = 300


@dataclass(frozen=True)
class Update:
    progress: Progress
    lines: tuple[str, ...] = ()
    thread_id: str | None = None
    chatter: bool = False  # client retry noise: not progress of the work


def one_line(text: str, limit: int = MAX_TEXT) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def shown_command(command: str) -> str:
    """`/bin/bash -lc 'gh pr diff 602'` -> `gh pr diff 602`."""
    match = _WRAPPED.match(command.strip())
    if match is None:
        inner = command
    elif match.group("single") is not None:
        inner = match.group("single").replace("'\\''", "'")
    else:
        inner = match.group("double").replace('\\"', '"')
    return one_line(inner, 200)


def is_chatter(message: str) -> bool:
    return bool(_CHATTER.match(message))


def _plan(progress: Progress, todo: list[dict[str, Any]]) -> tuple[Progress, tuple[str, ...]]:
    if progress.source == "reports":
        return progress, ()  # explicit reports win over the inferred plan
    done = [str(t.get("text", "")) for t in todo if t.get("completed")]
    pending = [str(t.get("text", "")) for t in todo if not t.get("completed")]
    new = Progress(
        total=len(todo),
        completed=len(done),
        current=pending[0] if pending else None,
        items=tuple(Item(title) for title in done),
        source="plan",
    )
    if (new.total, new.completed, new.current) == (progress.total, progress.completed, progress.current):
        return new, ()
    line = f"Plan: {new.completed}/{new.total} done" + (
        f"; next: {one_line(new.current, 120)}" if new.current else ""
    )
    return new, (line,)


def _changes(item: dict[str, Any]) -> str:
    changes = item.get("changes") or []
    listed = ", ".join(f"{c.get('kind', 'update')} {c.get('path', '?')}" for c in changes[:10])
    more = f" and {len(changes) - 10} more" if len(changes) > 10 else ""
    return f"Files changed: {listed}{more}" if listed else "Files changed"


def _command_done(item: dict[str, Any]) -> str:
    code = item.get("exit_code")
    verb = "Finished" if code == 0 else "Failed"
    return f"{verb} (exit {code}): {shown_command(str(item.get('command', '')))}"


def _collab_started(item: dict[str, Any]) -> str:
    """A subagent tool call (Codex's multi-agent tools): what it asks, or whom it waits for."""
    about = item.get("prompt") or ", ".join(str(t) for t in item.get("receiver_thread_ids") or [])
    return f"Subagent {item.get('tool')}" + (f": {one_line(about, 200)}" if about else "")


def _collab_done(item: dict[str, Any]) -> str:
    states = item.get("agents_states") if isinstance(item.get("agents_states"), dict) else {}
    assert isinstance(states, dict)
    said = [f"{agent} {_agent_state(state)}" for agent, state in list(states.items())[:5]]
    return f"Subagent {item.get('tool')} {item.get('status')}" + (f": {'; '.join(said)}" if said else "")


def _agent_state(state: Any) -> str:
    if not isinstance(state, dict):
        return str(state)
    message = state.get("message")
    return str(state.get("status")).replace("_", " ") + (f" ({one_line(message, 120)})" if message else "")


def _other_item(item: dict[str, Any]) -> str:
    """An item type this version of codexd does not know: its type and what it says, not nothing."""
    kind = str(item.get("type")).replace("_", " ")
    said = next((item[k] for k in ("text", "message", "query", "status") if isinstance(item.get(k), str)), "")
    return f"Codex {kind}" + (f": {one_line(said)}" if said else "")


_SILENT_ITEMS = {"reasoning", "todo_list"}  # the agent's musings; the plan is followed by _plan


def _item_started(item: dict[str, Any]) -> tuple[str, ...]:
    if item.get("type") == "command_execution":
        return (f"Running: {shown_command(str(item.get('command', '')))}",)
    if item.get("type") == "collab_tool_call":
        return (_collab_started(item),)
    return ()


def _item_completed(item: dict[str, Any]) -> tuple[str, ...]:
    kind = item.get("type")
    if kind == "command_execution" and item.get("status") == "declined":
        return (f"Declined: {shown_command(str(item.get('command', '')))}",)
    if kind == "command_execution":
        return (_command_done(item),)
    if kind == "file_change":
        return (_changes(item),)
    if kind == "agent_message":
        return (f"Agent: {one_line(item.get('text', ''))}",)
    if kind == "mcp_tool_call":
        return (f"Tool {item.get('server')}.{item.get('tool')}: {item.get('status')}",)
    if kind == "web_search":
        return (f"Web search: {one_line(item.get('query', ''), 200)}",)
    if kind == "error":
        return (f"Codex warning: {one_line(item.get('message', ''))}",)
    return _newer_item_completed(item)


def _newer_item_completed(item: dict[str, Any]) -> tuple[str, ...]:
    """Item types newer Codex CLIs emit (0.169 on), and any type not known yet."""
    kind = item.get("type")
    if kind == "collab_tool_call":
        return (_collab_done(item),)
    if kind == "plan":
        return (f"Proposed plan: {one_line(item.get('text') or '')}",)
    if kind in _SILENT_ITEMS:
        return ()
    return (_other_item(item),)


def _asked(progress: Progress, event: dict[str, Any]) -> Update:
    """The agent asks the user (request_user_input): said at once, and what the task waits on."""
    questions = event.get("questions") if isinstance(event.get("questions"), list) else []
    assert isinstance(questions, list)
    said = [str(q.get("question")) for q in questions if isinstance(q, dict) and q.get("question")]
    line = f"Waiting for input: {one_line('; '.join(said) or 'a question with no text')}"
    return Update(replace(progress, current=one_line(line, 200)), (line,))


def apply_event(progress: Progress, event: dict[str, Any], known_thread: str | None = None) -> Update:
    kind = event.get("type")
    item = event.get("item") if isinstance(event.get("item"), dict) else {}
    assert isinstance(item, dict)
    if item.get("type") == "todo_list" and kind in ("item.started", "item.updated", "item.completed"):
        new, lines = _plan(progress, list(item.get("items") or []))
        return Update(new, lines)
    if kind == "thread.started":
        thread = str(event.get("thread_id") or "")
        said = "resumed" if thread and thread == known_thread else "started"
        return Update(progress, (f"Codex session {thread} {said}",), thread_id=thread or None)
    if kind == "item.started":
        return Update(progress, _item_started(item))
    if kind == "item.completed":
        return Update(progress, _item_completed(item))
    if kind == "request_user_input":
        return _asked(progress, event)
    if kind == "turn.completed":
        return Update(progress, ("Turn completed",))
    if kind == "turn.failed":
        message = (event.get("error") or {}).get("message", "")
        return Update(progress, (f"Turn failed: {one_line(message)}",))
    if kind == "error":
        message = str(event.get("message", ""))
        if is_chatter(message):
            return Update(progress, chatter=True)
        return Update(progress, (f"Error: {one_line(message)}",))
    return Update(progress)


def _done(progress: Progress, title: str, outcome: str) -> Progress:
    completed = progress.completed + 1
    total = progress.total if progress.total is None else max(progress.total, completed)
    current = None if progress.current == title else progress.current
    items = (*progress.items, Item(title, outcome))
    return replace(progress, completed=completed, total=total, current=current, items=items)


def apply_report(progress: Progress, report: dict[str, Any]) -> Update:
    """A line written by `codexd progress` inside the task."""
    if progress.source != "reports":
        progress = Progress(source="reports")  # the first report replaces the inferred plan
    if "total" in report:
        total = int(report["total"])
        return Update(replace(progress, total=total), (f"Progress: {total} items to do",))
    if "current" in report:
        current = one_line(report["current"], 200)
        return Update(replace(progress, current=current), (f"Working on: {current}",))
    if "done" in report:
        title = one_line(report["done"], 200)
        outcome = one_line(report.get("outcome") or "done", 60)
        new = _done(progress, title, outcome)
        count = f"{new.completed}/{new.total}" if new.total else f"{new.completed}"
        return Update(new, (f"Done ({count}): {title} [{outcome}]",))
    return Update(progress)
