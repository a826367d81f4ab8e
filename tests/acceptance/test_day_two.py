"""Day two: a task that failed runs again under its id, ended tasks are removed, and the
small commands say what they did (issue 14)."""

from __future__ import annotations

import json
import stat

import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(60)]

# A "codex" whose turn fails until the test creates `pass` beside the tasks folder. Every run
# notes its arguments, and its session is always the same one (as Codex's is on a resume).
FLAKY = """#!/bin/sh
printf '%s\\n' "$*" >> "$CODEXD_TASK_DIR/argv.log"
cat > /dev/null
printf '{"type":"thread.started","thread_id":"thread-1"}\\n'
printf '{"type":"turn.started"}\\n'
if [ -e "$CODEXD_TASK_DIR/../../pass" ]; then
  printf '{"type":"item.completed","item":{"id":"i0","type":"agent_message","text":"all done"}}\\n'
  printf '{"type":"turn.completed","usage":{}}\\n'
else
  printf '{"type":"turn.failed","error":{"message":"the build broke"}}\\n'
  exit 1
fi
"""


def flaky(env) -> None:
    script = env.write("flaky-codex", FLAKY)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(script)]))


def submit(env, task_id: str) -> None:
    done = env.codexd("start", "--instructions", "-", "--task-id", task_id, input=b"Build it.\n")
    assert done.returncode == 0, done.stderr


def ended(env, task_id: str) -> dict:
    done = env.codexd("wait", task_id, "--timeout", "20")
    assert done.returncode in (0, 1), done.stderr
    return env.status(task_id)


def runs(env, task_id: str) -> list[str]:
    return (env.tasks / task_id / "argv.log").read_text().splitlines()


def one_line_refusal(done, text: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert text in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- retry ---------------------------------------------------------------------------------


def test_a_failed_task_runs_again_resuming_its_session_and_keeps_its_history(env, daemon):
    flaky(env)
    daemon()
    submit(env, "build")
    first = ended(env, "build")
    assert first["status"] == "failed" and "the build broke" in first["error"]
    (env.root / "pass").touch()
    done = env.codexd("retry", "build")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "build queued again: it resumes Codex session thread-1\n"
    final = ended(env, "build")
    assert final["status"] == "completed"
    assert final["error"] is None and final["exit_code"] == 0 and final["finished_at"]
    first_run, second_run = runs(env, "build")
    assert first_run.endswith(" -") and "resume" not in first_run
    assert second_run.endswith("resume thread-1 -")
    log = (env.tasks / "build" / "progress.log").read_text()
    assert log.index("Failed: Codex turn failed: the build broke") < log.index(
        "Retry requested: resuming Codex session thread-1"
    )
    assert "Resumed Codex session thread-1" in log and log.rstrip().endswith("Completed")
    kinds = [i["kind"] for i in final["incidents"]]
    assert kinds == ["failed", "rerun"]


def test_retry_fresh_starts_over(env, daemon):
    flaky(env)
    daemon()
    submit(env, "build")
    assert ended(env, "build")["status"] == "failed"
    (env.root / "pass").touch()
    done = env.codexd("retry", "build", "--fresh")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "build queued again: it starts afresh\n"
    assert ended(env, "build")["status"] == "completed"
    assert [run.endswith(" -") and "resume" not in run for run in runs(env, "build")] == [True, True]
    assert "Retry requested: starting afresh (--fresh)" in (env.tasks / "build" / "progress.log").read_text()


def test_a_cancelled_task_can_be_retried(env, daemon):
    env.set(CODEXD_CODEX__COMMAND='["/bin/sh", "-c", "cat >/dev/null; sleep 120"]')
    daemon()
    submit(env, "slow")
    wait_for(lambda: env.status("slow")["status"] == "in_progress", 10, "slow to run")
    assert env.codexd("stop", "slow").returncode == 0
    done = env.codexd("retry", "slow")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "slow queued again: it starts afresh\n"  # it never said its session
    wait_for(lambda: env.status("slow")["status"] == "in_progress", 10, "slow to run again")
    assert (
        "Retry requested: starting afresh (no Codex session was recorded)"
        in (env.tasks / "slow" / "progress.log").read_text()
    )


def test_retry_refuses_what_did_not_fail_or_was_cancelled(env, daemon):
    env.set(CODEXD_CODEX__COMMAND='["/bin/sh", "-c", "cat >/dev/null; sleep 120"]', CODEXD_MAX_PARALLEL="1")
    one_line_refusal(env.codexd("retry", "nope"), "no task 'nope'")
    submit(env, "waiting")
    one_line_refusal(env.codexd("retry", "waiting"), "task waiting is queued and has not run yet")
    daemon()
    wait_for(lambda: env.status("waiting")["status"] == "in_progress", 10, "the task to run")
    one_line_refusal(env.codexd("retry", "waiting"), "task waiting is in_progress: only a failed")
    flaky(env)
    (env.root / "pass").touch()
    (env.tasks / "done").mkdir()
    record = dict(env.status("waiting"), task_id="done", status="completed", pid=None)
    (env.tasks / "done" / "status.json").write_text(json.dumps(record))
    one_line_refusal(env.codexd("retry", "done"), "task done completed: only a failed or cancelled task")
    assert not (env.tasks / ".requests" / "done.retry").exists()


def test_retry_without_a_daemon_is_left_for_the_next_one(env, daemon):
    flaky(env)
    d = daemon()
    submit(env, "build")
    assert ended(env, "build")["status"] == "failed"
    assert d.stop() == 0
    (env.root / "pass").touch()
    done = env.codexd("retry", "build")
    assert done.returncode == 1
    assert "no daemon is running" in done.stderr and "when `codexd daemon` starts" in done.stderr
    assert env.status("build")["status"] == "failed"
    daemon()
    wait_for(lambda: env.status("build")["status"] == "completed", 20, "the retry at start-up")
    assert not (env.tasks / ".requests" / "build.retry").exists()
