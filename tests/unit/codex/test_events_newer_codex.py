"""Event and item types of newer Codex CLIs (0.169 on), and types not known yet, as progress lines."""

from __future__ import annotations

from typing import Any

import pytest

from codexd.codex.events import apply_event
from codexd.tasks.records import Progress

pytestmark = pytest.mark.timeout(30)

AGENT = "01a21812-6bc1-73b2-8110-ae4165a9c3b1"


def lines(kind: str, **fields: Any) -> tuple[str, ...]:
    return apply_event(Progress(), {"type": kind, **fields}).lines


def collab(tool: str, status: str, **fields: Any) -> dict[str, Any]:
    base = {"id": "item_1", "type": "collab_tool_call", "tool": tool, "status": status, "prompt": None}
    return {**base, "sender_thread_id": "t0", "receiver_thread_ids": [AGENT], "agents_states": {}, **fields}


def test_subagent_calls_say_what_they_ask_and_what_came_back():
    spawn = collab("spawn_agent", "in_progress", prompt="Count\nthe files.", receiver_thread_ids=[])
    assert lines("item.started", item=spawn) == ("Subagent spawn_agent: Count the files.",)
    assert lines("item.started", item=collab("wait", "in_progress")) == (f"Subagent wait: {AGENT}",)
    states = {AGENT: {"status": "completed", "message": "3 files"}}
    assert lines("item.completed", item=collab("wait", "completed", agents_states=states)) == (
        f"Subagent wait completed: {AGENT} completed (3 files)",
    )
    pending = {AGENT: {"status": "pending_init", "message": None}}
    assert lines("item.completed", item=collab("spawn_agent", "completed", agents_states=pending)) == (
        f"Subagent spawn_agent completed: {AGENT} pending init",
    )


def test_a_proposed_plan_and_a_declined_command_are_said():
    assert lines("item.completed", item={"type": "plan", "text": "1. read\n2. fix"}) == (
        "Proposed plan: 1. read 2. fix",
    )
    declined = {"type": "command_execution", "command": "/bin/bash -lc 'rm -rf x'", "status": "declined"}
    assert lines("item.completed", item={**declined, "exit_code": None}) == ("Declined: rm -rf x",)


def test_an_unknown_item_type_gets_a_line_and_an_unknown_event_type_passes():
    assert lines("item.completed", item={"type": "image_generation", "status": "completed"}) == (
        "Codex image generation: completed",
    )
    assert lines("item.completed", item={"type": "hologram"}) == ("Codex hologram",)
    assert lines("item.started", item={"type": "hologram"}) == ()
    assert lines("item.completed", item={"type": "reasoning", "text": "hmm"}) == ()
    assert lines("item.plan.delta", item_id="item_3", delta="1. read") == ()
    assert lines("thread.teleported", where="mars") == ()


def test_a_question_for_the_user_is_said_at_once_and_becomes_current():
    question = {"id": "b", "header": "Branch", "question": "Which branch?", "options": []}
    update = apply_event(Progress(), {"type": "request_user_input", "call_id": "c1", "questions": [question]})
    assert update.lines == ("Waiting for input: Which branch?",)
    assert update.progress.current == "Waiting for input: Which branch?"


@pytest.mark.parametrize(
    "event",
    [
        {"type": "request_user_input", "questions": "Which?"},
        {"type": "request_user_input", "questions": [None, 3, {"question": None}]},
        {"type": "item.completed", "item": collab("wait", "completed", agents_states=[AGENT])},
        {"type": "item.completed", "item": collab("wait", "completed", agents_states={AGENT: "gone"})},
        {"type": "item.started", "item": collab("wait", "in_progress", receiver_thread_ids="x")},
        {"type": "item.completed", "item": {"type": None}},
        {"type": "item.completed", "item": {"type": "plan", "text": None}},
    ],
)
def test_odd_values_in_newer_events_give_a_line_not_an_exception(event):
    update = apply_event(Progress(), event)
    assert all(isinstance(line, str) and line for line in update.lines)


DECLINED = (
    b"2026-11-26T13:40:02.123Z ERROR codex_core::tools::router: "
    b"error=request_user_input is unavailable in Default mode\n"
)


def test_a_question_codex_declined_on_stderr_is_said_once_and_is_not_progress(tmp_path):
    from codexd.daemon import follower
    from codexd.tasks import store
    from codexd.tasks.records import Cursor, TaskStatus
    from codexd.tasks.states import TaskState

    old_run = b"error=request_user_input is not supported in exec mode\n"  # before this run: said already
    (tmp_path / store.STDERR).write_bytes(old_run + b"Reading additional input from stdin...\n" + DECLINED)
    status = TaskStatus(
        "t", "generic", TaskState.IN_PROGRESS, "2026-11-26T13:40:00Z", "2026-11-26T13:40:00Z", "",
        daemon=Cursor(stderr_start=len(old_run)),
    )  # fmt: skip
    assert follower.advance(tmp_path, status) is None  # looked at when the events move: Codex goes on
    (tmp_path / store.EVENTS).write_bytes(b'{"type":"turn.started"}\n')
    moved = follower.advance(tmp_path, status)
    assert moved is not None
    assert moved.lines == ["The agent asked for input, which codex exec cannot give: Codex declined the "
                           "question and the agent goes on without an answer"]  # fmt: skip
    (tmp_path / store.EVENTS).write_bytes(b'{"type":"turn.started"}\n{"type":"turn.started"}\n')
    assert follower.advance(tmp_path, moved.status).lines == []  # read once, never again
