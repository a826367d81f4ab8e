"""The real Codex CLI, driven by a fake model on 127.0.0.1, supervised by a real daemon."""

from __future__ import annotations

import json
import signal
import time

import psutil
import pytest

from tests.conftest import wait_for
from tests.fake_model import Call, Fail, Say

pytestmark = [pytest.mark.codex, pytest.mark.both_codex, pytest.mark.timeout(90)]

PR_ANSWER = json.dumps(
    {
        "summary": "Reviewed 3 PRs",
        "prs": [
            {"number": 626, "title": "toml upgrade", "verdict": "approved", "summary": "fine"},
            {
                "number": 602,
                "title": "crossterm upgrade",
                "verdict": "changes_requested",
                "summary": "breaks",
            },
            {"number": 611, "title": "serde upgrade", "verdict": "commented", "summary": "question"},
        ],
    }
)
SCENARIOS = {
    "work": [
        Call("echo hello from the agent"),
        Call("printf 'x' > made.txt"),
        Say("All done: 2 commands ran."),
    ],
    "report": [
        Call("codexd progress --total 2 && codexd progress --current 'PR 1'"),
        Call(
            "codexd progress --done 'PR 1' --outcome approved && "
            "codexd progress --done 'PR 2' --outcome commented"
        ),
        Say("Reviewed both."),
    ],
    "broken": [Fail(500)],
    "pr": [Say(PR_ANSWER)],
    "slow": [Call("sleep 3"), Say("slept")],
    "short": [Call("sleep 0.3"), Say("ok")],
    "tree": [Call("bash -c 'trap \"\" TERM; sleep 600' & sleep 600", yield_ms=600_000), Say("never")],
}


def submit(env, scenario: str, *extra: str) -> str:
    path = env.write(f"{scenario}.md", f"SCENARIO: {scenario}\nPlease do the work.\n")
    done = env.codexd("start", "--instructions", str(path), *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def finished(env, task_id: str, timeout: float = 40) -> dict:
    return wait_for(
        lambda: (s := _status(env, task_id)) and s["status"] in ("completed", "failed", "cancelled") and s,
        timeout,
        f"{task_id} to finish",
    )


def log_text(env, task_id: str) -> str:
    try:
        return (env.tasks / task_id / "progress.log").read_text()
    except FileNotFoundError:
        return ""


def _status(env, task_id):
    try:
        return env.status(task_id)
    except (FileNotFoundError, ValueError):
        return None


def test_task_runs_commands_and_completes(env, model_world, daemon):
    model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "work")
    status = finished(env, task_id)
    assert status["status"] == "completed", status
    assert status["exit_code"] == 0 and status["error"] is None
    assert status["thread_id"] and status["started_at"] and status["finished_at"]
    log = (env.tasks / task_id / "progress.log").read_text()
    assert "Running: echo hello from the agent" in log
    assert "Finished (exit 0): echo hello from the agent" in log
    assert "Agent: All done: 2 commands ran." in log
    assert status["last_log"]["text"] == "Completed"
    events = (env.tasks / task_id / "events.jsonl").read_text().splitlines()
    assert json.loads(events[0]) == {"type": "thread.started", "thread_id": status["thread_id"]}
    assert json.loads((env.tasks / task_id / "results.json").read_text()) == {
        "summary": "All done: 2 commands ran."
    }
    assert (env.root / "made.txt").read_text() == "x"  # cwd defaults to where `start` ran
    assert env.codexd("wait", task_id).returncode == 0


def test_a_failing_endpoint_is_retried_then_the_task_fails_with_the_reason(env, model_world, daemon):
    model = model_world(SCENARIOS)
    env.set(CODEXD_HEALTH__MAX_RETRIES="1")
    daemon()
    task_id = submit(env, "broken")
    status = finished(env, task_id)
    assert status["status"] == "failed"
    assert status["exit_code"] == 1
    assert "Codex turn failed" in status["error"] and "2 times in a row" in status["error"]
    assert (status["retries"], status["restarts"], status["stalls"]) == (1, 0, 0)
    assert len(model.requests) == 2
    waited = env.codexd("wait", task_id)
    assert waited.returncode == 1 and "failed" in waited.stdout


def test_progress_reported_from_inside_the_task(env, model_world, daemon):
    model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "report")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    progress = status["progress"]
    assert (progress["total"], progress["completed"], progress["percentage"]) == (2, 2, 100.0)
    assert progress["items"] == [
        {"title": "PR 1", "outcome": "approved"},
        {"title": "PR 2", "outcome": "commented"},
    ]
    assert status["results"] == {"approved": 1, "commented": 1}
    log = (env.tasks / task_id / "progress.log").read_text()
    assert "Working on: PR 1" in log and "Done (2/2): PR 2 [commented]" in log


def test_pr_review_results_follow_the_schema(env, model_world, daemon):
    model = model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "pr", "--type", "pr_review")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    assert status["results"] == {"approved": 1, "changes_requested": 1, "commented": 1}
    results = json.loads((env.tasks / task_id / "results.json").read_text())
    assert results["summary"] == "Reviewed 3 PRs" and len(results["prs"]) == 3
    assert results["approved"] == 1
    assert status["progress"]["items"][1] == {
        "title": "#602 - crossterm upgrade",
        "outcome": "changes_requested",
    }
    assert "changes_requested" in json.dumps(model.requests[0])  # the schema reached the model


def test_max_parallel_runs_the_rest_in_order(env, model_world, daemon):
    model_world(SCENARIOS)
    env.set(CODEXD_MAX_PARALLEL="1")
    daemon()
    ids = [submit(env, "short", "--task-id", f"p{i}") for i in range(3)]
    most = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [(_status(env, i) or {}).get("status") for i in ids]
        most = max(most, states.count("in_progress"))
        if all(s == "completed" for s in states):
            break
        time.sleep(0.02)
    assert most == 1
    started = [env.status(i)["daemon"]["pid_create_time"] for i in ids]
    assert started == sorted(started)  # oldest first


def test_stop_ends_the_whole_tree(env, model_world, daemon):
    model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "tree")
    wait_for(lambda: len(_task_procs(env, task_id)) >= 4, 30, "the task's tree")  # node, codex, bash, sleeps
    stopped = env.codexd("stop", task_id)
    assert stopped.returncode == 0, stopped.stderr
    assert env.status(task_id)["status"] == "cancelled"
    wait_for(lambda: not _task_procs(env, task_id), 10, "every process of the task to end")
    assert "Cancelled" in env.status(task_id)["last_log"]["text"]


def _task_procs(env, task_id):
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("CODEXD_TASK_ID") == task_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_new_daemon_readopts_a_running_task(env, model_world, daemon, signum):
    model_world(SCENARIOS)
    first = daemon()
    task_id = submit(env, "slow")
    wait_for(lambda: "Running: sleep 3" in log_text(env, task_id), 20, "sleep to start")
    pid = env.status(task_id)["pid"]
    first.signal(signum)
    first.proc.wait(10)
    assert psutil.pid_exists(pid), "the task died with the daemon"
    daemon()
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    log = (env.tasks / task_id / "progress.log").read_text()
    assert log.count("Running: sleep 3") == 1 and log.count("Finished (exit 0): sleep 3") == 1
    assert json.loads((env.tasks / task_id / "results.json").read_text())["summary"] == "slept"


def test_a_task_that_ended_while_no_daemon_ran_is_finished_from_its_log(env, model_world, daemon):
    model_world(SCENARIOS)
    first = daemon()
    task_id = submit(env, "slow")
    wait_for(lambda: (_status(env, task_id) or {}).get("status") == "in_progress", 20, "the task to start")
    pid = env.status(task_id)["pid"]
    first.signal(signal.SIGKILL)
    first.proc.wait(10)
    wait_for(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        30,
        "codex to finish alone",
    )
    daemon()
    status = finished(env, task_id, timeout=10)
    assert status["status"] == "completed", status["error"]
    assert status["exit_code"] is None  # nobody saw the exit; the turn events decided
    assert "Finished (exit 0): sleep 3" in (env.tasks / task_id / "progress.log").read_text()
