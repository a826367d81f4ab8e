"""Codex events and the agent's own reports, turned into progress and human log lines.

Pure functions: each takes the task's progress and one event or report and returns the
new progress and the lines for progress.log. The supervisor does the writing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from codexd.fields import BIG, Fields, integer
from codexd.present.shown import shown, shown_line
from codexd.tasks.frozen import replace
from codexd.tasks.records import Item, Progress, ProgressSource, Usage

_WRAPPED = re.compile(
    r"""^(?:/usr)?/bin/(?:ba|z|da)?sh -l?c (?:'(?P<single>.*)'|"(?P<double>.*)")$""", re.DOTALL
)
_CHATTER = re.compile(r"^\s*(Reconnecting|Retrying)\b", re.IGNORECASE)
# Codex 0.169-0.171 decline the agent's question in `codex exec` and say so on stderr only.
_DECLINED_QUESTION = re.compile(rb"request_user_input is (?:unavailable|not supported)")
_THREAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")  # what Codex prints (a UUID), nothing else
MAX_TEXT = 300


@dataclass(frozen=True)
class Update:
    progress: Progress
    lines: tuple[str, ...] = ()
    thread_id: str | None = None
    chatter: bool = False  # client retry noise: not progress of the work
    usage: Usage | None = None  # the session's use so far (Codex counts it cumulatively)


def _text(found: object) -> str:
    """A field that should be text (events of another Codex version may hold anything there),
    its control characters made visible: what the agent wrote is shown, never obeyed."""
    return shown(found) if isinstance(found, str) else ""


def _count(found: object) -> int | None:
    """A count an agent reported: a whole number, or its digits as text; else None."""
    if isinstance(found, str) and found.strip().isdigit() and len(found) < 16:
        return int(found)
    return integer(found, None, 0, BIG)


def one_line(text: str, limit: int = MAX_TEXT) -> str:
    """Agent text as one line of at most `limit` characters, its control characters made
    visible (codexd.present.shown): every view of progress.log is then safe for a terminal."""
    flat = shown_line(str(text))
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


def _plan(progress: Progress, listed: object) -> tuple[Progress, tuple[str, ...]]:
    if progress.source == ProgressSource.REPORTS:
        return progress, ()  # explicit reports win over the inferred plan
    todo = [t for t in listed if isinstance(t, dict)] if isinstance(listed, list) else []
    done = [one_line(_text(t.get("text")), 200) for t in todo if t.get("completed") is True]
    pending = [one_line(_text(t.get("text")), 200) for t in todo if t.get("completed") is not True]
    new = Progress(
        total=len(todo),
        completed=len(done),
        current=pending[0] if pending else None,
        items=tuple(Item(title) for title in done),
        source=ProgressSource.PLAN,
    )
    if (new.total, new.completed, new.current) == (progress.total, progress.completed, progress.current):
        return new, ()
    line = f"Plan: {new.completed}/{new.total} done" + (
        f"; next: {one_line(new.current, 120)}" if new.current else ""
    )
    return new, (line,)


def _changes(item: dict[str, Any]) -> str:
    found = item.get("changes")
    changes = [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []
    listed = ", ".join(
        f"{_text(c.get('kind')) or 'update'} {_text(c.get('path')) or '?'}" for c in changes[:10]
    )
    more = f" and {len(changes) - 10} more" if len(changes) > 10 else ""
    return f"Files changed: {listed}{more}" if listed else "Files changed"


def _change(change: dict[str, Any]) -> str:
    return f"{_text(change.get('kind')) or 'update'} {one_line(_text(change.get('path')), 200) or '?'}"


def _command_done(item: dict[str, Any]) -> str:
    code = integer(item.get("exit_code"), None, -(2**31), 2**31)
    verb = "Finished" if code == 0 else "Failed"
    return f"{verb} (exit {code}): {shown_command(_text(item.get('command')))}"


def _collab_started(item: dict[str, Any]) -> str:
    """A subagent tool call (Codex's multi-agent tools): what it asks, or whom it waits for."""
    receivers = item.get("receiver_thread_ids")
    ids = [t for t in receivers if isinstance(t, str)] if isinstance(receivers, list) else []
    about = _text(item.get("prompt")) or ", ".join(ids)
    return f"Subagent {_text(item.get('tool'))}" + (f": {one_line(about, 200)}" if about else "")


def _collab_done(item: dict[str, Any]) -> str:
    states = item.get("agents_states") if isinstance(item.get("agents_states"), dict) else {}
    assert isinstance(states, dict)
    said = [f"{one_line(str(agent), 60)} {_agent_state(state)}" for agent, state in list(states.items())[:5]]
    head = f"Subagent {_text(item.get('tool'))} {_text(item.get('status'))}"
    return head + (f": {'; '.join(said)}" if said else "")


def _agent_state(state: Any) -> str:
    if not isinstance(state, dict):
        return one_line(str(state), 120)
    message = _text(state.get("message"))
    return _text(state.get("status")).replace("_", " ") + (f" ({one_line(message, 120)})" if message else "")


def _other_item(item: dict[str, Any]) -> str:
    """An item type this version of codexd does not know: its type and what it says, not nothing."""
    kind = one_line(str(item.get("type")), 60).replace("_", " ")
    said = next((item[k] for k in ("text", "message", "query", "status") if isinstance(item.get(k), str)), "")
    return f"Codex {kind}" + (f": {one_line(said)}" if said else "")


_SILENT_ITEMS = {"reasoning", "todo_list"}  # the agent's musings; the plan is followed by _plan


def _item_started(item: dict[str, Any]) -> tuple[str, ...]:
    if item.get("type") == "command_execution":
        return (f"Running: {shown_command(_text(item.get('command')))}",)
    if item.get("type") == "collab_tool_call":
        return (_collab_started(item),)
    return ()


def _item_completed(item: dict[str, Any]) -> tuple[str, ...]:
    kind = item.get("type")
    if kind == "command_execution" and item.get("status") == "declined":
        return (f"Declined: {shown_command(_text(item.get('command')))}",)
    if kind == "command_execution":
        return (_command_done(item),)
    if kind == "file_change":
        return (_changes(item),)
    if kind == "agent_message":
        return (f"Agent: {one_line(_text(item.get('text')))}",)
    if kind == "mcp_tool_call":
        server, tool, status = (one_line(_text(item.get(k)), 100) for k in ("server", "tool", "status"))
        return (f"Tool {server}.{tool}: {status}",)
    if kind == "web_search":
        return (f"Web search: {one_line(_text(item.get('query')), 200)}",)
    if kind == "error":
        return (f"Codex warning: {one_line(_text(item.get('message')))}",)
    return _newer_item_completed(item)


def _newer_item_completed(item: dict[str, Any]) -> tuple[str, ...]:
    """Item types newer Codex CLIs emit (0.169 on), and any type not known yet."""
    kind = item.get("type")
    if kind == "collab_tool_call":
        return (_collab_done(item),)
    if kind == "plan":
        return (f"Proposed plan: {one_line(_text(item.get('text')))}",)
    if not isinstance(kind, str) or kind in _SILENT_ITEMS:
        return ()
    return (_other_item(item),)


def _asked(progress: Progress, event: dict[str, Any]) -> Update:
    """The agent asks the user (request_user_input): said at once, and what the task waits on."""
    questions = event.get("questions") if isinstance(event.get("questions"), list) else []
    assert isinstance(questions, list)
    said = [_text(q.get("question")) for q in questions if isinstance(q, dict) and _text(q.get("question"))]
    line = f"Waiting for input: {one_line('; '.join(said) or 'a question with no text')}"
    return Update(replace(progress, current=one_line(line, 200)), (line,))


def from_stderr(line: bytes) -> tuple[str, ...]:
    """Lines for progress.log from one line of Codex's stderr (nearly all of it is noise)."""
    if _DECLINED_QUESTION.search(line):
        return (
            "The agent asked for input, which codex exec cannot give: Codex declined the question "
            "and the agent goes on without an answer",
        )
    return ()


def apply_event(progress: Progress, event: dict[str, Any], known_thread: str | None = None) -> Update:
    kind = event.get("type")
    found = event.get("item")
    item: dict[str, Any] = found if isinstance(found, dict) else {}
    if item.get("type") == "todo_list" and kind in ("item.started", "item.updated", "item.completed"):
        new, lines = _plan(progress, item.get("items"))
        return Update(new, lines)
    if kind == "thread.started":
        thread = _thread_id(event.get("thread_id"))
        said = "resumed" if thread and thread == known_thread else "started"
        return Update(progress, (f"Codex session {thread} {said}",), thread_id=thread or None)
    if kind == "item.started":
        return Update(progress, _item_started(item))
    if kind == "item.completed":
        return Update(progress, _item_completed(item))
    if kind == "request_user_input":
        return _asked(progress, event)
    if kind == "turn.completed":
        return Update(progress, ("Turn completed",), usage=Usage.read(Fields(event.get("usage"))))
    if kind == "turn.failed":
        return Update(progress, (f"Turn failed: {one_line(failure(event))}",))
    if kind == "error":
        message = _text(event.get("message"))
        if is_chatter(message):
            return Update(progress, chatter=True)
        return Update(progress, (f"Error: {one_line(message)}",))
    return Update(progress)


def _thread_id(found: object) -> str:
    return found if isinstance(found, str) and _THREAD_ID.fullmatch(found) else ""


def failure(event: dict[str, Any]) -> str:
    """A turn.failed event's message: `error` is an object with a message, or (other versions) text."""
    error = event.get("error")
    return _text(error.get("message")) if isinstance(error, dict) else _text(error)


def _done(progress: Progress, title: str, outcome: str) -> Progress:
    completed = progress.completed + 1
    total = progress.total if progress.total is None else max(progress.total, completed)
    current = None if progress.current == title else progress.current
    items = (*progress.items, Item(title, outcome))
    return replace(progress, completed=completed, total=total, current=current, items=items)


def apply_report(progress: Progress, report: dict[str, Any]) -> Update:
    """A line written by `codexd progress` inside the task."""
    if progress.source != ProgressSource.REPORTS:
        progress = Progress(source=ProgressSource.REPORTS)  # the first report replaces the inferred plan
    total = _count(report.get("total"))
    if total is not None:
        return Update(replace(progress, total=total), (f"Progress: {total} items to do",))
    if isinstance(report.get("current"), str):
        current = one_line(report["current"], 200)
        return Update(replace(progress, current=current), (f"Working on: {current}",))
    if isinstance(report.get("done"), str):
        title = one_line(report["done"], 200)
        outcome = one_line(_text(report.get("outcome")) or "done", 60)
        new = _done(progress, title, outcome)
        count = f"{new.completed}/{new.total}" if new.total else f"{new.completed}"
        return Update(new, (f"Done ({count}): {title} [{outcome}]",))
    return Update(progress)
