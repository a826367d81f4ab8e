"""The daemon as a process against a Codex that misbehaves, a bug planted in it, a kill in the
middle of a stop and a task folder removed by hand: it never crash-loops and never loops a task."""

from __future__ import annotations

import json
import shutil
import signal
import time

import pytest

from tests.conftest import ROOT, wait_for
from tests.fault.test_trees_and_endpoints import FORKER, tree_of

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]
PLANTED = ROOT / "tests" / "fault" / "planted"

QUICK_END = """#!/bin/bash
# A Codex run that ends at once; every run leaves a line in runs.
echo $$ >> "$CODEXD_TASK_DIR/runs"
cat > /dev/null
{events}
{stderr}
exit {code}
"""
THREAD = """printf '{"type":"thread.started","thread_id":"th-%s"}\\n{"type":"turn.started"}\\n' "$$" """
CASES = {
    "lost_session": (
        THREAD,
        'echo "Error: thread/resume failed: no rollout found for thread id th-1" >&2',
        1,
        2,  # the first run, and one fresh start
        "no rollout found",
    ),
    "exit_1": (
        "",
        'echo "Error: something broke" >&2',
        1,
        1,
        "Codex exited with code 1: Error: something broke",
    ),
    "exit_0_without_a_turn": (THREAD, "", 0, 1, "Codex exited without finishing its turn"),
    "busy_endpoint": (
        THREAD,
        'echo "Error: unexpected status 429 Too Many Requests" >&2',
        1,
        3,  # the first run and health.max_retries = 2 retries
        "429 Too Many Requests",
    ),
}


def start(env, task_id: str, text: str = "Do it.\n", *extra: str) -> None:
    done = env.codexd("start", "--instructions", "-", "--task-id", task_id, *extra, input=text.encode())
    assert done.returncode == 0, done.stderr


def ended(env, task_id: str) -> dict | None:
    path = env.tasks / task_id / "status.json"
    status = json.loads(path.read_text()) if path.exists() else None
    return status if status and status["status"] in ("completed", "failed", "cancelled") else None


@pytest.mark.parametrize("case", sorted(CASES))
def test_runs_that_end_at_once_cannot_loop(env, daemon, case):
    events, stderr, code, most, error = CASES[case]
    script = env.root / "quick-codex"
    script.write_text(QUICK_END.format(events=events, stderr=stderr, code=code))
    script.chmod(0o755)
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(script)]), CODEXD_HEALTH__MAX_RETRIES="2")
    running = daemon()
    start(env, "quick")
    final = wait_for(lambda: ended(env, "quick"), 30, "the task to end")
    time.sleep(1.0)  # ten backoffs' worth: a loop would show here
    runs = (env.tasks / "quick" / "runs").read_text().split()
    print(f"\n{case}: {len(runs)} run(s), error: {final['error']}")
    assert len(runs) == most
    assert final["status"] == "failed" and error in final["error"]
    assert running.proc.poll() is None


def test_a_bug_with_one_task_fails_that_task_and_no_daemon_meets_it_again(env, daemon):
    script = env.root / "poisoned-codex"
    script.write_text(
        "#!/bin/bash\ncat > /dev/null\n"
        'printf \'{"type":"thread.started","thread_id":"p"}\\n{"type":"test.poison"}\\n\'\n'
        "exec sleep 600\n"
    )
    script.chmod(0o755)
    env.set(
        CODEXD_CODEX__COMMAND=json.dumps([str(script)]),
        CODEXD_TEST_FAULT="follow",
        PYTHONPATH=f"{PLANTED}:{ROOT}",
    )
    first = daemon()
    start(env, "poisoned")
    final = wait_for(lambda: ended(env, "poisoned"), 20, "the poisoned task to end")
    assert final["status"] == "failed"
    assert final["error"].startswith("internal error: AttributeError: 'NoneType' object has no attribute")
    assert final["error"].endswith("(see the daemon log)")
    wait_for(lambda: not tree_of(env, "poisoned"), 10, "its tree to be ended")
    assert first.proc.poll() is None
    logged = [line for line in first.output().splitlines() if "task.internal_error" in line]
    assert len(logged) == 1 and "AttributeError" in logged[0] and "sitecustomize.py" in logged[0]  # traceback
    assert first.stop() == 0
    second = daemon()  # a new daemon does not read the input that set the bug off again
    time.sleep(0.5)
    assert "task.internal_error" not in second.output().split("daemon.started")[-1]
    assert ended(env, "poisoned") == final
    assert second.stop() == 0


def test_a_stop_survives_a_daemon_killed_during_its_grace(env, daemon):
    script = env.root / "forker"
    script.write_text(FORKER)
    script.chmod(0o755)
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(script)]), CODEXD_DAEMON__STOP_GRACE="5")
    first = daemon()
    start(env, "forky")
    wait_for(lambda: len(tree_of(env, "forky")) >= 51, 20, "the 51 processes")
    request = env.tasks / ".requests" / "forky.stop"
    request.write_text("now")  # what `codexd stop` leaves for the daemon
    wait_for(lambda: "Stopping" in (env.tasks / "forky" / "progress.log").read_text(), 10, "the stop")
    first.signal(signal.SIGKILL)  # in the grace: SIGTERM sent and ignored, SIGKILL not yet
    first.proc.wait(5)
    assert tree_of(env, "forky") and env.status("forky")["status"] == "in_progress"
    second = daemon()
    final = wait_for(lambda: ended(env, "forky"), 30, "the task to end")
    assert final["status"] == "cancelled"
    wait_for(lambda: not tree_of(env, "forky"), 15, "nothing left of the tree")
    wait_for(lambda: not request.exists(), 10, "the request to be removed")
    assert second.stop() == 0


def test_a_task_folder_removed_by_hand_frees_its_slot(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(ROOT / "bench" / "ticker")]), CODEXD_MAX_PARALLEL="1")
    running = daemon()
    start(env, "doomed")
    wait_for(lambda: tree_of(env, "doomed"), 10, "its Codex")
    start(env, "next")
    wait_for((env.tasks / "next" / "status.json").exists, 10, "the next task taken from the spool")
    assert env.status("next")["status"] == "queued"
    shutil.rmtree(env.tasks / "doomed")
    wait_for(lambda: env.status("next")["status"] == "in_progress", 15, "the next task to start")
    wait_for(lambda: not tree_of(env, "doomed"), 15, "the removed task's processes to end")
    assert running.output().count("task.folder_gone") == 1
    assert running.proc.poll() is None


@pytest.mark.parametrize("damage", ["removed", "a file"])
def test_a_task_whose_cwd_went_bad_fails_naming_it(env, daemon, damage):
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(ROOT / "bench" / "ticker")]), CODEXD_MAX_PARALLEL="1")
    work = env.root / "work"
    work.mkdir()
    daemon()
    start(env, "blocker")
    start(env, "homeless", "Do it.\n", "--cwd", str(work))
    wait_for((env.tasks / "homeless" / "status.json").exists, 10, "the task to be queued")
    shutil.rmtree(work)  # while it waits its turn
    if damage == "a file":
        work.write_text("not a folder")
    (env.tasks / ".requests" / "blocker.stop").write_text("now")
    final = wait_for(lambda: ended(env, "homeless"), 20, "the task to end")
    print(f"\n{damage}: {final['error']}")
    assert final["status"] == "failed" and str(work) in final["error"]
    assert "install Codex" not in final["error"]
    assert ("no longer exists" if damage == "removed" else "is not a folder") in final["error"]
