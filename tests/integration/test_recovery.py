"""Stalls, restarts and retries with the real Codex CLI and a fake model on 127.0.0.1."""

from __future__ import annotations

import json
import signal

import pytest

from tests.conftest import wait_for
from tests.fake_model import Call, Fail, Hang, Once, Say
from tests.integration.test_codex_tasks import _status, _task_procs, finished, log_text, submit

pytestmark = [pytest.mark.codex, pytest.mark.both_codex, pytest.mark.timeout(120)]

SCENARIOS = {
    "silent_once": [Call("echo step >> steps.txt"), Once(Hang(), Say("finished after resume"))],
    "always_silent": [Call("echo step >> steps.txt"), Hang()],
    "rate_limited": [Once(Fail(429), Say("answered at last"), times=2)],
    "locked_out": [Fail(401)],
    "stubborn_tree": [
        Call("bash -c 'trap \"\" TERM; sleep 600' & sleep 600", yield_ms=600_000),
        Say("never"),
    ],
    "long_step": [
        Call("echo step >> steps.txt"),
        Once(Call("sleep 60", yield_ms=120_000), Say("done after a manual restart")),
    ],
}


@pytest.fixture
def quick_stalls(env):
    # 4 s: a resumed Codex on a loaded machine can take 2 s to say its first word, and must
    # not be taken for a second stall.
    env.set(CODEXD_HEALTH__STALL_TIMEOUT="4", CODEXD_HEALTH__MAX_RESTARTS="2")


def thread_ids(env, task_id: str) -> list[str]:
    ids = []
    for line in (env.tasks / task_id / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "thread.started":
            ids.append(event["thread_id"])
    return ids


def stall_delays(output: str) -> list[float]:
    """`late_by` of every task.stalled line the daemon logged: seconds past the deadline."""
    delays = []
    for line in output.splitlines():
        if '"task.stalled"' in line:
            delays.append(json.loads(line)["late_by"])
    return delays


@pytest.mark.usefixtures("quick_stalls")
def test_a_silent_stream_is_flagged_killed_and_resumed_in_the_same_thread(env, model_world, daemon):
    model = model_world(SCENARIOS)
    running = daemon()
    task_id = submit(env, "silent_once")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    assert (status["stalls"], status["restarts"], status["retries"]) == (1, 1, 0)
    assert (env.root / "steps.txt").read_text() == "step\n"  # the finished step did not run again
    threads = thread_ids(env, task_id)
    assert len(threads) == 2 and threads[0] == threads[1] == status["thread_id"]
    assert (
        json.loads((env.tasks / task_id / "results.json").read_text())["summary"] == "finished after resume"
    )
    log = log_text(env, task_id)
    assert "Stalled: no progress for" in log and f"Resumed Codex session {threads[0]}" in log
    assert "interrupted" in model.prompts()[-1]  # the continuation prompt reached the model
    delays = stall_delays(running.output())
    assert len(delays) == 1 and 0 <= delays[0] < 1.0, delays


@pytest.mark.usefixtures("quick_stalls")
def test_a_stream_that_always_goes_silent_fails_after_max_restarts(env, model_world, daemon):
    model_world(SCENARIOS)
    env.set(CODEXD_HEALTH__MAX_RESTARTS="1")
    daemon()
    task_id = submit(env, "always_silent")
    status = finished(env, task_id, timeout=60)
    assert status["status"] == "failed"
    assert (status["stalls"], status["restarts"]) == (2, 1)
    assert (
        status["error"].startswith("stalled: no progress for") and "1 restart did not help" in status["error"]
    )
    assert json.loads((env.tasks / task_id / "results.json").read_text())["error"] == status["error"]
    wait_for(lambda: not _task_procs(env, task_id), 10, "every process of the task to end")
    assert (env.root / "steps.txt").read_text() == "step\n"


def test_a_rate_limited_turn_is_retried_without_spending_the_stall_budget(env, model_world, daemon):
    model = model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "rate_limited")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    assert (status["retries"], status["restarts"], status["stalls"]) == (2, 0, 0)
    assert len(model.requests) == 3
    assert log_text(env, task_id).count("The model endpoint is busy or unavailable; retrying") == 2
    assert len(set(thread_ids(env, task_id))) == 1


def test_an_authentication_failure_fails_at_once_and_says_to_log_in(env, model_world, daemon):
    model = model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "locked_out")
    status = finished(env, task_id)
    assert status["status"] == "failed"
    assert "codex login" in status["error"] and "401" in status["error"]
    assert status["retries"] == 0 and len(model.requests) == 1


def test_a_stalled_tree_whose_grandchild_ignores_sigterm_is_all_gone(env, model_world, daemon):
    model_world(SCENARIOS)
    env.set(CODEXD_HEALTH__STALL_TIMEOUT="3", CODEXD_HEALTH__MAX_RESTARTS="0", CODEXD_DAEMON__STOP_GRACE="1")
    daemon()
    task_id = submit(env, "stubborn_tree")
    wait_for(lambda: len(_task_procs(env, task_id)) >= 4, 30, "the task's tree")
    status = finished(env, task_id, timeout=30)
    assert status["status"] == "failed" and "0 restarts did not help" in status["error"]
    wait_for(lambda: not _task_procs(env, task_id), 10, "every process of the task to end")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_daemon_killed_during_recovery_leaves_the_next_one_to_resume(env, model_world, daemon, signum):
    model_world(SCENARIOS)
    env.set(CODEXD_HEALTH__STALL_TIMEOUT="2", CODEXD_HEALTH__BACKOFF="4")
    first = daemon()
    task_id = submit(env, "silent_once")
    wait_for(lambda: (_status(env, task_id) or {}).get("status") == "stalled", 30, "the stall")
    first.signal(signum)
    first.proc.wait(10)
    daemon()
    status = finished(env, task_id, timeout=40)
    assert status["status"] == "completed", status["error"]
    assert (status["stalls"], status["restarts"]) == (1, 1)
    assert (env.root / "steps.txt").read_text() == "step\n"
    assert len(set(thread_ids(env, task_id))) == 1


def test_restart_by_hand_kills_and_resumes_now(env, model_world, daemon):
    model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "long_step")
    wait_for(lambda: "Running: sleep 60" in log_text(env, task_id), 30, "the long step")
    done = env.codexd("restart", task_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{task_id} restarted")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    assert (status["restarts"], status["stalls"]) == (1, 0)
    assert (env.root / "steps.txt").read_text() == "step\n"
    assert "Restart requested" in log_text(env, task_id)
