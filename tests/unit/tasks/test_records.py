"""Every line and file from outside is read for any JSON value and any bytes: Codex events
of any version, the agent's reports and final message, status.json and outbox files edited
by hand. Ill-typed fields are skipped, never an exception, and nothing non-finite is written."""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codexd.codex import outcome
from codexd.codex.events import apply_event, apply_report
from codexd.daemon import follower
from codexd.errors import BrokenRecord
from codexd.notify.outbox import Delivery, Outbox
from codexd.tasks import store, tasktypes
from codexd.tasks.records import Cursor, Item, Progress, TaskStatus
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(60)

# Any JSON value, as `json.loads` of a hostile line gives it (NaN and the infinities included).
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
)
EVENT_TYPES = st.sampled_from(
    ["thread.started", "turn.started", "turn.completed", "turn.failed", "error", "item.started",
     "item.updated", "item.completed", "request_user_input", "new.kind"]
)  # fmt: skip
ITEM_TYPES = st.sampled_from(
    ["command_execution", "file_change", "agent_message", "mcp_tool_call", "web_search", "error",
     "todo_list", "reasoning", "collab_tool_call", "plan", "new_item"]
)  # fmt: skip
ITEM_FIELDS = ["type", "command", "exit_code", "changes", "text", "server", "tool", "status", "query",
               "message", "items", "prompt", "receiver_thread_ids", "agents_states"]  # fmt: skip
ITEMS = (
    st.fixed_dictionaries({"type": ITEM_TYPES}, optional={k: VALUES for k in ITEM_FIELDS if k != "type"})
    | VALUES
)
EVENTS = st.fixed_dictionaries(
    {"type": EVENT_TYPES},
    optional={"item": ITEMS, "error": VALUES, "message": VALUES, "thread_id": VALUES, "questions": VALUES},
)
REPORTS = st.fixed_dictionaries({}, optional={k: VALUES for k in ("total", "current", "done", "outcome")})
IDENTITY = {"task_id": "t1", "status": "in_progress", "created_at": "2025-10-31T12:00:00Z"}
STATUS_FIELDS = [*TaskStatus("t", "g", TaskState.QUEUED, "c", "u", "l").to_dict()]
STATUSES = st.fixed_dictionaries(
    {},
    optional={
        **{k: VALUES for k in STATUS_FIELDS},
        "progress": st.fixed_dictionaries(
            {}, optional={k: VALUES for k in ("total", "completed", "current", "items", "source")}
        ),
        "daemon": st.fixed_dictionaries({}, optional={k: VALUES for k in Cursor().to_dict()}),
    },
)


def no_nan_text(data: bytes) -> None:
    """What the daemon writes is JSON every reader takes: no NaN or Infinity."""
    json.loads(data, parse_constant=lambda name: pytest.fail(f"{name} written"))


def written(status: TaskStatus) -> bytes:
    data = store.dump_json(status.to_dict())
    no_nan_text(data)
    return data


# -- the findings, one by one ------------------------------------------------------------------


def test_a_turn_failed_whose_error_is_text_is_told_not_raised():
    event = {"type": "turn.failed", "error": "quota exceeded"}
    assert apply_event(Progress(), event).lines == ("Turn failed: quota exceeded",)
    assert outcome.summarize([json.dumps(event).encode()]).turn_failed == "quota exceeded"


@pytest.mark.parametrize(
    ("report", "total"),
    [({"total": "abc"}, None), ({"total": 1e999}, None), ({"total": math.nan}, None), ({"total": -5}, 0),
     ({"total": [3]}, None), ({"total": True}, None), ({"total": "7"}, 7), ({"total": 10**400}, 2**53),
     ({"total": 3.0}, 3), ({"total": 2.5}, None)],
)  # fmt: skip
def test_an_agent_report_of_any_total_is_taken_or_skipped(report, total):
    assert apply_report(Progress(), report).progress.total == total


@pytest.mark.parametrize(
    "event",
    [
        {"type": "item.completed", "item": ["not", "an", "object"]},
        {"type": "item.completed", "item": {"type": "file_change", "changes": "src/a.py"}},
        {"type": "item.completed", "item": {"type": "file_change", "changes": [1, None, {"path": 5}]}},
        {"type": "item.updated", "item": {"type": "todo_list", "items": [1, "x", {"text": {"a": 1}}]}},
        {"type": "item.updated", "item": {"type": "todo_list", "items": {"text": "x"}}},
        {"type": "item.completed", "item": {"type": "agent_message", "text": ["a", "b"]}},
        {"type": "item.completed", "item": {"type": "command_execution", "command": 5, "exit_code": "1"}},
        {"type": "item.completed", "item": {"type": "command_execution", "exit_code": math.inf}},
        {"type": "item.completed", "item": {"type": "mcp_tool_call", "server": {}, "tool": []}},
        {"type": "turn.failed", "error": {"message": {"nested": True}}},
        {"type": "turn.failed", "error": 5},
        {"type": "thread.started", "thread_id": {"a": 1}},
        {"type": "thread.started", "thread_id": "--dangerously-bypass-approvals-and-sandbox"},
        {"type": "error", "message": None},
        {"type": "item.started", "item": {"type": "collab_tool_call", "receiver_thread_ids": 5}},
        {"type": "item.started", "item": {"type": "collab_tool_call", "prompt": {"a": 1}, "tool": []}},
        {"type": "item.completed", "item": {"type": "collab_tool_call", "agents_states": {"a": [1]}}},
        {
            "type": "item.completed",
            "item": {"type": "collab_tool_call", "agents_states": {"a": {"message": 5}}},
        },
        {"type": "item.completed", "item": {"type": "plan", "text": ["step"]}},
        {"type": "item.completed", "item": {"type": {"nested": "type"}}},
        {"type": "request_user_input", "questions": [{"question": {"q": 1}}, 5, None]},
        {"type": "request_user_input", "questions": "why?"},
        {"type": ["item.completed"]},
    ],
)
def test_ill_typed_event_fields_are_skipped(event):
    update = apply_event(Progress(), event, "thread-1")
    assert all(isinstance(line, str) for line in update.lines)
    assert update.thread_id is None or update.thread_id.isprintable()


@pytest.mark.parametrize(
    "changes",
    [
        {"progress": "abc"},
        {"progress": {"items": [1, "x", None]}},
        {"progress": {"total": "abc", "completed": -3, "current": 5}},
        {"started_at": "yesterday", "finished_at": 5, "updated_at": None},
        {"daemon": {"resume": {"at": "x", "kind": "restart"}, "events": 1e300, "active_at": "now"}},
        {"daemon": "cursor", "last_log": [1], "results": {"approved": "three"}, "pid": -1},
        {"restarts": "2", "stall_timeout": math.inf, "exit_code": 1e20, "thread_id": 5},
    ],
)
def test_a_status_with_ill_typed_fields_loads_with_defaults(changes):
    status = TaskStatus.from_dict({**IDENTITY, **changes})
    assert (status.task_id, status.status) == ("t1", TaskState.IN_PROGRESS)
    assert TaskStatus.from_dict(json.loads(written(status))) == status


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({}, "task_id"),
        ({**IDENTITY, "task_id": 5}, "task_id"),
        ({**IDENTITY, "task_id": "../etc"}, "task_id"),
        ({**IDENTITY, "status": "done"}, "status"),
        ({**IDENTITY, "status": ["queued"]}, "status"),
        ({**IDENTITY, "created_at": "yesterday"}, "created_at"),
        ([IDENTITY], "task_id"),
    ],
)
def test_only_a_status_without_its_identity_is_refused(data, why):
    with pytest.raises(ValueError, match=why):
        TaskStatus.from_dict(data)


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe{", b"[" * 100_000, b'{"task_id": "t1"}'],
)
def test_a_broken_status_file_is_named(tmp_path, raw):
    tasks = store.TaskStore(tmp_path)
    tasks.dir("t1").mkdir()
    tasks.file("t1", store.STATUS).write_bytes(raw)
    with pytest.raises(
        BrokenRecord, match=r"t1/status.json is not a valid task record \(.+\): fix or remove"
    ):
        tasks.read_status("t1")
    assert tasks.all_statuses(broken := []) == [] and len(broken) == 1


def test_no_infinity_reaches_status_json():
    status = TaskStatus.from_dict(IDENTITY).with_(stall_timeout=math.inf, progress=Progress(current="\ud800"))
    data = written(status)
    assert b"Infinity" not in data and json.loads(data)["stall_timeout"] is None
    assert (
        store.dump_json({"a": [math.nan, -math.inf, 1.5]})
        == b'{\n  "a": [\n    null,\n    null,\n    1.5\n  ]\n}\n'
    )


@pytest.mark.parametrize(
    "message",
    [
        "[1, 2]",
        '{"prs": "all"}',
        '{"prs": [1, null, ["x"], {"number": [1], "title": {"a": 1}, "verdict": 5}]}',
        '{"prs": [{"number": 1e999, "title": "x", "verdict": ["approved"]}]}',
        '{"prs": [{"number": "602", "title": 5, "verdict": "approved"}]}',
        '{"summary": NaN}',
        "[" * 5000,
        '{"a":' * 500 + "1" + "}" * 500,
        "\ud800",
    ],
)
def test_any_final_message_becomes_results(message):
    kind = tasktypes.BUILTIN["pr_review"]
    results, counts, progress = tasktypes.build_results(kind, message, Progress())
    no_nan_text(store.dump_json(results))
    assert all(isinstance(n, int) for n in counts.values())
    assert all(isinstance(i.title, str) and isinstance(i.outcome, str) for i in progress.items)


def test_a_final_message_with_numbers_where_text_goes_is_read():
    kind = tasktypes.BUILTIN["pr_review"]
    message = '{"prs": [{"number": 602, "title": 5, "verdict": "approved"}, {"title": "y"}]}'
    _, counts, progress = tasktypes.build_results(kind, message, Progress())
    assert progress.items == (Item("#602 - 5", "approved"), Item("y", "done"))
    assert counts["approved"] == 1


def test_an_outbox_entry_edited_by_hand_does_not_block_the_others(tmp_path):
    box = Outbox(tmp_path)
    box.open()
    good = Delivery("k1", "t1", "completed", "json://x", "T", "text", "md", "info", 100.0)
    box.put(good)
    box.put(Delivery("k2", "t1", "failed", "json://x", "T", "text", "md", "info", 50.0))
    edited = json.loads((box.dir / "k2.json").read_text()) | {"created_at": "yesterday", "attempts": "2"}
    (box.dir / "k2.json").write_text(json.dumps(edited))
    (box.dir / "k3.json").write_bytes(b"[1]")
    (box.dir / "k4.json").write_text(json.dumps({**good.to_dict(), "key": "../../escape", "task_id": "../x"}))
    (box.dir / "k5.json").write_text(json.dumps({**good.to_dict(), "key": "../../escape"}))
    broken: list[str] = []
    found = box.pending(broken)
    assert sorted(d.key for d in found) == ["k1", "k2", "k5"]  # k5's inner key is not its file's
    assert {d.key: d.attempts for d in found}["k2"] == 0
    assert len(broken) == 2 and all("is not a notice" in line for line in broken)
    (box.dir / "failed" / "f1.json").write_text('{"created_at": "x", "reason": 5}')
    (box.dir / "failed" / "f2.json").write_text(json.dumps({**good.to_dict(), "created_at": None}))
    assert [f["key"] for f in box.failed()] == ["f2"]


# -- properties: any JSON value, any bytes --------------------------------------------------------


@given(EVENTS | VALUES.filter(lambda v: isinstance(v, dict)))
def test_any_event_is_applied(event):
    update = apply_event(Progress(source="plan"), event, "t")
    assert all(isinstance(line, str) for line in update.lines)
    written(TaskStatus.from_dict(IDENTITY).with_(progress=update.progress, thread_id=update.thread_id))


@given(REPORTS | VALUES.filter(lambda v: isinstance(v, dict)))
def test_any_report_is_applied(report):
    progress = apply_report(Progress(total=3, completed=1), report).progress
    written(TaskStatus.from_dict(IDENTITY).with_(progress=progress))


@given(st.lists(st.binary(max_size=200) | EVENTS.map(lambda e: json.dumps(e).encode()), max_size=8))
def test_any_event_log_is_summarized(lines):
    summary = outcome.summarize(lines)
    assert summary.turn_failed is None or isinstance(summary.turn_failed, str)
    assert summary.last_error is None or isinstance(summary.last_error, str)


@given(st.text(max_size=300) | VALUES.map(json.dumps))
def test_any_final_message_is_turned_into_results(message):
    for kind in tasktypes.BUILTIN.values():
        results, counts, progress = tasktypes.build_results(kind, message, Progress())
        no_nan_text(store.dump_json(results))
        written(TaskStatus.from_dict(IDENTITY).with_(progress=progress, results=counts))


@given(STATUSES | VALUES)
def test_any_status_loads_or_is_refused_for_its_identity(data):
    with_identity = {**data, **IDENTITY} if isinstance(data, dict) else data
    try:
        status = TaskStatus.from_dict(with_identity)
    except ValueError:
        assert not isinstance(data, dict)
        return
    assert TaskStatus.from_dict(json.loads(written(status))) == status
    with contextlib.suppress(ValueError):
        TaskStatus.from_dict(data)


@given(st.binary(max_size=300) | VALUES.map(lambda v: json.dumps(v).encode()))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_in_status_json_load_or_are_named(raw):
    with tempfile.TemporaryDirectory() as folder:
        tasks = store.TaskStore(Path(folder))
        tasks.dir("t1").mkdir()
        tasks.file("t1", store.STATUS).write_bytes(raw)
        try:
            written(tasks.read_status("t1"))
        except BrokenRecord as exc:
            assert "status.json is not a valid task record" in str(exc)


@given(VALUES)
def test_any_outbox_entry_is_read_or_refused(data):
    try:
        delivery = Delivery.from_dict(data, "k1", 10.0)
    except ValueError:
        return
    assert math.isfinite(delivery.created_at) and isinstance(delivery.attempts, int)
    no_nan_text(store.dump_json(delivery.to_dict()))


def as_lines(found: list[bytes]) -> bytes:
    return b"".join(line.replace(b"\n", b" ") + b"\n" for line in found)


LINES = st.binary(max_size=120) | (EVENTS | REPORTS).map(lambda v: json.dumps(v).encode())


@given(st.lists(LINES, max_size=6), st.lists(LINES, max_size=6))
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_any_event_and_report_files_are_followed(events, reports):
    with tempfile.TemporaryDirectory() as folder:
        task_dir = Path(folder)
        (task_dir / store.EVENTS).write_bytes(as_lines(events))
        (task_dir / store.REPORTS).write_bytes(as_lines(reports))
        moved = follower.advance(task_dir, TaskStatus.from_dict(IDENTITY))
        if moved is not None:
            written(moved.status)
            assert all(isinstance(line, str) and line.encode() for line in moved.lines)


def test_the_quick_commands_know_every_state():
    from codexd.tasks import statusfile

    assert {s.value for s in TaskState} == statusfile.STATES
