"""A corpus of hostile task files on a real daemon: Codex events and agent reports of any
shape, final messages of any shape, status.json and outbox files broken by hand. The daemon
starts and stays up, the other tasks complete, what it writes is strict JSON, and every
command answers with one line and the right exit code."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests import sink
from tests.acceptance.test_broken_files import GOOD, ODD, UNREADABLE
from tests.acceptance.test_cli import one_line_error
from tests.conftest import wait_for
from tests.fault import hostile_codex

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

HOSTILE_CODEX = json.dumps([sys.executable, str(Path(hostile_codex.__file__))])
ENDED = ("completed", "failed", "cancelled")


def ended(env, task_id: str) -> bool:
    return (env.tasks / task_id / "status.json").exists() and env.status(task_id)["status"] in ENDED


def strict_json(path: Path) -> object:
    """What the daemon wrote reads as JSON, with no NaN or Infinity."""
    return json.loads(path.read_bytes(), parse_constant=lambda name: pytest.fail(f"{name} in {path}"))


def leave_broken_tasks(tasks: Path) -> list[str]:
    """Status files broken by hand before the daemon starts; the names of the readable ones."""
    for name, raw in UNREADABLE.items():
        (tasks / name).mkdir(parents=True)
        (tasks / name / "status.json").write_bytes(raw)
    readable = []
    for state in ("queued", "in_progress", "stalled", "completed"):
        for name, changes in ODD.items():
            task_id = f"{name}-{state}"
            (tasks / task_id).mkdir()
            (tasks / task_id / "instructions.md").write_text("Do it.\n")
            data = {**GOOD.to_dict(), "task_id": task_id, "status": state, **changes}
            data["daemon"] = {"resume": {"at": "soon", "kind": 5}, "events": "x", "log": -1}
            (tasks / task_id / "status.json").write_text(json.dumps(data))
            readable.append(task_id)
    return readable


def leave_broken_notices(tasks: Path, url: str) -> None:
    outbox = tasks / ".outbox"
    for folder in (outbox, outbox / "sent", outbox / "failed"):
        folder.mkdir(mode=0o700, exist_ok=True)
    notice = {"key": "k", "task_id": "good", "event": "completed", "url": url, "title": "Hand-made"}
    notice |= {"text": "t", "markdown": "m", "kind": "info", "created_at": "yesterday", "attempts": "two"}
    (outbox / "k1.json").write_text(json.dumps(notice))
    (outbox / "k2.json").write_bytes(b"[1, 2]")
    (outbox / "k3.json").write_bytes(b"\xff\xfe")
    (outbox / "k4.json").write_text(json.dumps({**notice, "url": 5}))
    (outbox / "failed" / "k5.json").write_text('{"created_at": "x"}')


def test_hostile_files_never_break_the_daemon(env, daemon):
    readable = leave_broken_tasks(env.tasks)
    with sink.serve() as hook:
        env.set(
            CODEXD_CODEX__COMMAND=HOSTILE_CODEX,
            CODEXD_MAX_PARALLEL="4",
            CODEXD_NOTIFY__URLS=json.dumps([hook.url()]),
            CODEXD_NOTIFY__BACKOFF="0.2",
        )
        leave_broken_notices(env.tasks, hook.url())
        running = daemon()
        submitted = []
        for i in range(len(hostile_codex.MESSAGES)):
            text = f"+++\ntask_id = 'msg-{i}'\ntype = 'pr_review'\n+++\nMESSAGE: {i}\n"
            done = env.codexd("start", "--instructions", "-", input=text.encode())
            assert done.returncode == 0, done.stderr
            submitted.append(f"msg-{i}")
        for task_id in submitted:
            wait_for(
                lambda t=task_id: (
                    (env.tasks / t / "status.json").exists() and env.status(t)["status"] in ENDED
                ),
                60,
                f"{task_id} to end",
            )
        wait_for(lambda: "Hand-made" in hook.titles(), 20, "the hand-made notice, whatever its created_at")
        time.sleep(0.5)  # the daemon's last writes for the readable hand-made tasks

        assert running.proc.poll() is None, running.output()
        for task_id in submitted:
            status = strict_json(env.tasks / task_id / "status.json")
            fits = status["status"] == "completed"  # else it failed saying the message does not fit
            assert fits or status["error"].startswith("⚠️ results did not match"), (task_id, status["error"])
            assert status["thread_id"] == "0199a213-81c0-7800-8aa1-bbab2a035a53"  # the hostile ids ignored
            strict_json(env.tasks / task_id / "results.json")
            (env.tasks / task_id / "progress.log").read_bytes().decode()  # UTF-8 throughout
        # reported "second" approved, and the final JSON's #602 approved: one list of items, counted
        assert strict_json(env.tasks / "msg-0" / "results.json")["approved"] == 2
        for task_id in readable:
            strict_json(env.tasks / task_id / "status.json")
        log = running.output()
        assert "Traceback" not in log
        assert all(f"{name}/status.json is not a valid task record" in log for name in UNREADABLE)
        assert log.count("notice.unreadable") >= 3

    listed = env.codexd("list")
    assert listed.returncode == 0 and all(t in listed.stdout for t in [*submitted, *readable])
    complaints = listed.stderr.strip().splitlines()
    assert len([c for c in complaints if "is not a valid task record" in c]) == len(UNREADABLE)
    assert all(c.startswith("codexd: ") for c in complaints), listed.stderr  # one line each
    as_json = env.codexd("list", "--json")
    assert {t["task_id"] for t in json.loads(as_json.stdout)} == {*submitted, *readable}
    aggregated = env.codexd("aggregate", "--all", "--format", "json")
    assert json.loads(aggregated.stdout)["tasks"] == len(submitted) + len(readable)
    for name in UNREADABLE:
        one_line_error(env.codexd("status", name), 2, f"{name}/status.json", "fix or remove it")
    outbox = env.codexd("notify", "outbox", "--json")
    assert outbox.returncode == 0 and isinstance(json.loads(outbox.stdout), list)
    assert "Traceback" not in outbox.stderr + aggregated.stderr + as_json.stderr
    events, reports = len(hostile_codex.EVENTS), len(hostile_codex.REPORTS)
    print(f"\n{events} hostile events and {reports} reports in each of {len(submitted)} tasks,")
    print(f"{len(UNREADABLE)} broken and {len(readable)} odd status files, 4 broken notices")
