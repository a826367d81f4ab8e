"""Busy is not a stall, with the real Codex CLI: a command that keeps a core busy in silence is
left to finish, one that waits on nothing is restarted, and one busy past busy_timeout is a
stall all the same."""

from __future__ import annotations

import json

import pytest

from codexd.present import views
from tests.conftest import wait_for
from tests.fake_model import Call, Once, Say
from tests.integration.test_codex_tasks import _task_procs, finished, log_text, submit

pytestmark = [pytest.mark.codex, pytest.mark.both_codex, pytest.mark.timeout(120)]


def spin(seconds: float) -> str:
    """A shell command that keeps one core busy for `seconds` and prints nothing meanwhile."""
    return f"python3 -c 'import time; t = time.time()\nwhile time.time() - t < {seconds}: pass'"


# Nearly no CPU, but a file held open that grows every quarter second (a download, a long log).
WRITE = (
    'python3 -c \'import time\nf = open("fetched.bin", "w")\n'
    'for _ in range(40): f.write("x" * 4096); f.flush(); time.sleep(0.25)\''
)
# Busy until the test has looked (it makes `release`), at most a minute.
SPIN_UNTIL_RELEASED = (
    "python3 -c 'import os, time; t = time.time()\n"
    'while not os.path.exists("release") and time.time() - t < 60: pass\''
)
AFTER_RESUME = "finished after resume"
SCENARIOS = {
    "busy": [Call(SPIN_UNTIL_RELEASED, yield_ms=120_000), Say("built")],
    # The killed call may or may not reach the resumed session's history: either way it ends.
    "idle": [Once(Call("sleep 30", yield_ms=60_000), Say(AFTER_RESUME)), Say(AFTER_RESUME)],
    "endless": [Call(spin(60), yield_ms=120_000), Say("never")],
    "writing": [Call(WRITE, yield_ms=60_000), Say("fetched")],
}


@pytest.fixture
def short_stalls(env):
    env.set(
        CODEXD_HEALTH__STALL_TIMEOUT="2", CODEXD_HEALTH__BUSY_TIMEOUT="30", CODEXD_HEALTH__MAX_RESTARTS="2"
    )


def _health(env) -> dict:
    done = env.codexd("health", "--json")
    assert done.returncode in (0, 1), done.stderr
    found: dict = json.loads(done.stdout)
    return found


@pytest.mark.usefixtures("short_stalls")
@pytest.mark.parametrize("trees", ["auto", "group"])  # the cgroup's cpu.stat here; else psutil
def test_a_silent_command_that_keeps_a_core_busy_is_not_restarted(env, model_world, daemon, trees):
    env.set(CODEXD_PROCESS_TREES=trees)
    model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "busy")
    wait_for(lambda: "busy: python3" in log_text(env, task_id), 30, "the busy line")
    line = next(line for line in log_text(env, task_id).splitlines() if "busy: python3" in line)
    assert "of CPU since the last event; not a stall (up to busy_timeout 30s)" in line, line
    found = _health(env)  # another process judges it alike, from what the daemon recorded
    assert not [f for f in found["findings"] if f["kind"] == "stalled"], found
    (task,) = [t for t in found["tasks"] if t["task_id"] == task_id]
    assert task["busy"] is not None and task["busy"]["what"].startswith("python3 -c"), task
    text = views.health_report(found)  # the same check's text, as `codexd health` prints it
    assert f"{task_id}  in_progress" in text and "; busy: python3 -c" in text and "of CPU" in text, text
    (env.root / "release").touch()
    status = finished(env, task_id, timeout=60)
    assert status["status"] == "completed", status["error"]
    assert (status["stalls"], status["restarts"]) == (0, 0)
    # Said once, not once per look (a Codex slow to start on a loaded machine may be busy
    # past the stall timeout before its first event: a line of its own).
    assert log_text(env, task_id).count(" busy: python3 -c") == 1
    assert "Stalled" not in log_text(env, task_id)


def completed(env, model_world, daemon, scenario: str) -> tuple[dict, str]:
    """The scenario's task run to its end, which must be `completed`: (status, its log)."""
    model_world(SCENARIOS)
    daemon()
    task_id = submit(env, scenario)
    status = finished(env, task_id, timeout=60)
    assert status["status"] == "completed", status["error"]
    return status, log_text(env, task_id)


@pytest.mark.usefixtures("short_stalls")
def test_a_silent_command_that_waits_on_nothing_is_still_a_stall(env, model_world, daemon):
    status, log = completed(env, model_world, daemon, "idle")
    assert (status["stalls"], status["restarts"]) == (1, 1)
    assert (
        "Stalled: no progress for" in log and "(stall_timeout 2s)" in log and "Resumed Codex session" in log
    )
    assert "busy: sleep" not in log  # (Codex slow to start may be busy a moment: not the command)


def test_a_command_busy_past_busy_timeout_is_a_stall(env, model_world, daemon):
    model_world(SCENARIOS)
    env.set(
        CODEXD_HEALTH__STALL_TIMEOUT="2", CODEXD_HEALTH__BUSY_TIMEOUT="5", CODEXD_HEALTH__MAX_RESTARTS="0"
    )
    daemon()
    task_id = submit(env, "endless")
    status = finished(env, task_id, timeout=60)
    assert status["status"] == "failed" and status["error"].startswith("stalled: no progress for")
    assert status["stalls"] == 1
    log = log_text(env, task_id)
    assert "busy: python3 -c" in log and "not a stall (up to busy_timeout 5s)" in log
    assert "its processes busy all the while (busy_timeout 5s)" in log, log
    wait_for(lambda: not _task_procs(env, task_id), 10, "every process of the task to end")


@pytest.mark.usefixtures("short_stalls")
def test_a_silent_command_whose_file_keeps_growing_is_not_restarted(env, model_world, daemon):
    status, log = completed(env, model_world, daemon, "writing")
    assert (status["stalls"], status["restarts"]) == (0, 0)
    assert (env.root / "fetched.bin").stat().st_size == 40 * 4096  # it ran to its end, once
    assert " busy: " in log
