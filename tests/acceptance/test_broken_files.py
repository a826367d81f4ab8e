"""Task files broken by hand or by accident: every command names the file in one line and
exits 2, and `list`, `aggregate --all` and `notify outbox` go on with the others."""

from __future__ import annotations

import json

import pytest

from codexd.notify.outbox import Delivery, Outbox
from codexd.tasks import store
from codexd.tasks.records import Progress, TaskStatus
from codexd.tasks.states import TaskState
from tests.acceptance.test_cli import one_line_error

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(90)]

# status.json contents that cannot be a task record
UNREADABLE: dict[str, bytes] = {
    "not-json": b"{ this is not json\n",
    "empty": b"",
    "array": b'[{"task_id": "array"}]\n',
    "number": b"5\n",
    "binary": b"\xff\xfe\x00\x01",
    "deep": b"[" * 100_000,
    "no-identity": b'{"status": "completed", "created_at": "2025-10-31T12:00:00Z"}\n',
    "bad-state": b'{"task_id": "bad-state", "status": "done", "created_at": "2025-10-31T12:00:00Z"}\n',
    "formatted": b'{\n  "task_id": "formatted",\n  "status": oops\n}\n',  # the daemon's layout, not JSON
    "formatted-id": b'{\n  "task_id": 5,\n  "status": "completed"\n}\n',
}
GOOD = TaskStatus(
    "good",
    "pr_review",
    TaskState.COMPLETED,
    "2025-10-31T12:00:00Z",
    "2025-10-31T12:05:00Z",
    "-",
    started_at="2025-10-31T12:00:01Z",
    finished_at="2025-10-31T12:05:00Z",
    progress=Progress(total=2, completed=2),
    results={"approved": 2},
)
# readable, with ill-typed fields: shown with defaults
ODD = {
    "wrong-types": {
        "progress": "abc",
        "results": [1],
        "restarts": "many",
        "started_at": "yesterday",
        "stall_timeout": "soon",
    },
    "items-of-numbers": {"progress": {"items": [1, "x"], "total": "3"}, "started_at": 5, "last_log": "x"},
}


@pytest.fixture
def tasks(env) -> store.TaskStore:
    found = store.TaskStore(env.tasks)
    for name, raw in UNREADABLE.items():
        found.dir(name).mkdir(parents=True)
        found.file(name, store.STATUS).write_bytes(raw)
    found.dir("good").mkdir()
    found.write_status(GOOD)
    found.write_results("good", {"summary": "all good"})
    for name, changes in ODD.items():
        found.dir(name).mkdir()
        data = {**GOOD.to_dict(), "task_id": name, **changes}
        found.file(name, store.STATUS).write_text(json.dumps(data, indent=2) + "\n")
    return found


@pytest.mark.parametrize("name", sorted(UNREADABLE))
@pytest.mark.parametrize(
    "command",
    [["status"], ["status", "--json"], ["logs"], ["logs", "-n", "5"], ["report"], ["results"], ["wait"]],
    ids=" ".join,
)
def test_a_command_on_a_broken_status_file_names_it(env, tasks, name, command):
    done = env.codexd(command[0], name, *command[1:])
    path = str(tasks.file(name, store.STATUS))
    one_line_error(done, 2, path, "is not a valid task record", "fix or remove it")
    assert done.stdout == ""


@pytest.mark.parametrize("name", sorted(ODD))
def test_a_status_with_ill_typed_fields_is_shown_with_defaults(env, tasks, name):
    shown = env.codexd("status", name)
    assert shown.returncode == 0, shown.stderr
    assert f"{name}  (pr_review)  completed" in shown.stdout and "elapsed -" in shown.stdout
    assert "Traceback" not in shown.stderr and "progress" in shown.stderr  # says what it ignored
    as_json = env.codexd("status", name, "--json")  # as written, or as read: JSON either way
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["task_id"] == name
    for command in (["report", name], ["logs", name, "-n", "3"], ["logs", name], ["results", name]):
        done = env.codexd(*command)
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, (command, done.stderr)


def test_list_and_aggregate_show_the_other_tasks(env, tasks):
    readable = {"good", *ODD}
    for command in (["list"], ["aggregate", "--all"], ["aggregate", "--all", "--since", "2025-01-01"]):
        done = env.codexd(*command)
        assert done.returncode == 0, (command, done.stderr)
        assert all(name in done.stdout for name in readable), command
        complaints = done.stderr.strip().splitlines()
        assert len([c for c in complaints if "is not a valid task record" in c]) == len(UNREADABLE)
        assert "Traceback" not in done.stderr
    listed = env.codexd("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {t["task_id"] for t in json.loads(listed.stdout)} == readable
    total = json.loads(env.codexd("aggregate", "--all", "--format", "json").stdout)
    assert total["tasks"] == len(readable)


def test_list_json_is_json_when_a_file_in_the_daemon_layout_is_broken(env):
    found = store.TaskStore(env.tasks)
    found.dir("good").mkdir(parents=True)
    found.write_status(GOOD)
    found.dir("formatted").mkdir()
    found.file("formatted", store.STATUS).write_bytes(UNREADABLE["formatted-id"])
    listed = env.codexd("list", "--json")
    assert [t["task_id"] for t in json.loads(listed.stdout)] == ["good"]
    assert "formatted/status.json is not a valid task record" in listed.stderr


def test_a_results_file_that_is_not_json_is_named(env, tasks):
    tasks.file("good", store.RESULTS).write_bytes(b"{oops")
    one_line_error(env.codexd("results", "good"), 2, "results.json is not a valid task record")


def test_notify_outbox_shows_the_good_entries_and_names_the_broken(env, tasks):
    box = Outbox(env.tasks)
    box.open()
    box.put(Delivery("k1", "good", "completed", "json://localhost/x", "T", "t", "m", "info", 100.0))
    edited = {**json.loads((box.dir / "k1.json").read_text()), "key": "k2", "created_at": "yesterday"}
    (box.dir / "k2.json").write_text(json.dumps(edited))
    (box.dir / "k3.json").write_bytes(b"[1, 2]")
    (box.dir / "k4.json").write_bytes(b"\xff")
    (box.dir / "failed" / "k5.json").write_text('{"created_at": "x"}')
    for command in (["notify", "outbox"], ["notify", "outbox", "--json"]):
        done = env.codexd(*command)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 2 and "k3.json is not a notice" in done.stderr
    shown = json.loads(env.codexd("notify", "outbox", "--json").stdout)  # stdout is JSON alone
    assert [e["task_id"] for e in shown] == ["good", "good"]
