"""Day two: a task that failed runs again under its id, ended tasks are removed, and the
small commands say what they did (issue 14)."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from datetime import UTC, datetime

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


def state(env, task_id: str) -> str | None:
    """The task's status once its folder is made (a task submitted waits in the spool first)."""
    path = env.tasks / task_id / "status.json"
    return env.status(task_id)["status"] if path.exists() else None


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
    wait_for(lambda: state(env, "slow") == "in_progress", 10, "slow to run")
    assert env.codexd("stop", "slow").returncode == 0
    done = env.codexd("retry", "slow")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "slow queued again: it starts afresh\n"  # it never said its session
    wait_for(lambda: state(env, "slow") == "in_progress", 10, "slow to run again")
    assert (
        "Retry requested: starting afresh (no Codex session was recorded)"
        in (env.tasks / "slow" / "progress.log").read_text()
    )


# A "codex" that ends on SIGTERM, with a child that ignores it: stopping it takes the whole
# grace period after the task is already recorded cancelled.
LINGERING = (
    '["/bin/sh", "-c", "cat >/dev/null; sh -c \'trap \\"\\" TERM; exec sleep 120\' & '
    'touch \\"$CODEXD_TASK_DIR/run-$$\\"; exec sleep 120"]'
)


def test_a_task_retried_while_its_stopped_tree_lingers_is_not_killed_with_it(env, daemon):
    """The stop's killer was still waiting out its grace for the child that ignored SIGTERM
    when the retried run started, and then took the new run for a straggler (SIGKILL)."""
    env.set(CODEXD_CODEX__COMMAND=LINGERING, CODEXD_DAEMON__STOP_GRACE="2")
    daemon()
    submit(env, "lingering")
    wait_for(lambda: list((env.tasks / "lingering").glob("run-*")), 10, "the first run")
    assert env.codexd("stop", "lingering").returncode == 0
    assert env.codexd("retry", "lingering").returncode == 0
    wait_for(lambda: len(list((env.tasks / "lingering").glob("run-*"))) == 2, 20, "the retried run")
    time.sleep(3)  # past the stop's 2 s grace, when its killer sends SIGKILL to what is left
    status = json.loads((env.tasks / "lingering" / "status.json").read_text())
    assert status["status"] == "in_progress", status["error"]


def test_retry_refuses_what_did_not_fail_or_was_cancelled(env, daemon):
    env.set(CODEXD_CODEX__COMMAND='["/bin/sh", "-c", "cat >/dev/null; sleep 120"]', CODEXD_MAX_PARALLEL="1")
    one_line_refusal(env.codexd("retry", "nope"), "no task 'nope'")
    submit(env, "waiting")
    one_line_refusal(env.codexd("retry", "waiting"), "task waiting is queued and has not run yet")
    daemon()
    wait_for(lambda: state(env, "waiting") == "in_progress", 10, "the task to run")
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
    wait_for(lambda: state(env, "build") == "completed", 20, "the retry at start-up")
    assert not (env.tasks / ".requests" / "build.retry").exists()


# -- rm and prune ------------------------------------------------------------------------------


def record(env, task_id: str, state: str, finished: str | None = "2025-10-31T12:00:00Z", **more) -> None:
    folder = env.tasks / task_id
    folder.mkdir(parents=True)
    (folder / "artifacts").mkdir()
    at = "2025-10-31T11:00:00Z"
    data = {"task_id": task_id, "type": "generic", "status": state, "created_at": at, "updated_at": at}
    (folder / "status.json").write_text(json.dumps(dict(data, finished_at=finished, **more)))


def test_rm_deletes_ended_tasks_and_refuses_the_others_one_line_each(env):
    for task_id, state in [
        ("ok", "completed"),
        ("bad", "failed"),
        ("off", "cancelled"),
        ("busy", "in_progress"),
    ]:
        record(env, task_id, state, None if state == "in_progress" else "2025-10-31T12:00:00Z")
    (env.tasks / ".requests").mkdir()
    (env.tasks / ".requests" / "bad.retry").write_text("x")
    (env.tasks / ".requests" / "bad.x.stop").write_text("x")  # another task's
    dry = env.codexd("rm", "ok", "busy", "--dry-run")
    assert dry.returncode == 2 and dry.stdout == "would remove ok\n"
    assert (env.tasks / "ok").is_dir()
    done = env.codexd("rm", "ok", "bad", "busy", "nope", "off")
    assert done.returncode == 2
    assert done.stdout == "removed ok\nremoved bad\nremoved off\n"
    refused = done.stderr.strip().splitlines()
    assert len(refused) == 2
    assert "task busy is in_progress: only an ended task can be removed" in refused[0]
    assert "no task 'nope'" in refused[1]
    assert sorted(p.name for p in env.tasks.iterdir()) == [".removing", ".requests", "busy"]
    assert [p.name for p in (env.tasks / ".requests").iterdir()] == ["bad.x.stop"]
    assert list((env.tasks / ".removing").iterdir()) == []


def test_rm_removes_a_link_in_place_of_a_task_and_never_what_it_points_to(env):
    target = env.root / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    env.tasks.mkdir()
    (env.tasks / "planted").symlink_to(target)
    done = env.codexd("rm", "planted")
    assert done.returncode == 0, done.stderr
    assert "removed planted (a link" in done.stdout
    assert not (env.tasks / "planted").is_symlink() and (target / "keep.txt").read_text() == "mine"


def test_prune_removes_the_tasks_that_ended_long_enough_ago(env):
    record(env, "old", "completed")
    record(env, "old-fail", "failed")
    record(env, "recent", "completed", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    record(env, "busy", "in_progress", None)
    dry = env.codexd("prune", "--older-than", "7d", "--dry-run")
    assert dry.returncode == 0 and sorted(dry.stdout.splitlines()) == [
        "would remove old",
        "would remove old-fail",
    ]
    done = env.codexd("prune", "--older-than", "12h")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["removed old", "removed old-fail"]
    assert sorted(p.name for p in env.tasks.iterdir() if not p.name.startswith(".")) == ["busy", "recent"]
    again = env.codexd("prune", "--older-than", "3600")
    assert again.returncode == 0 and "nothing to prune" in again.stderr
    bad = env.codexd("prune", "--older-than", "a week")
    one_line_refusal(bad, "--older-than 'a week' is not a duration")


def git(*args: str, cwd) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def test_rm_removes_a_tasks_worktree_and_keeps_its_branch(env):
    repo = env.root / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x", cwd=repo)
    tree = env.root / "wt-done"
    git("worktree", "add", "-q", "-b", "codexd/done", str(tree), cwd=repo)
    worktree = {"path": str(tree), "branch": "codexd/done", "base": "HEAD"}
    record(env, "done", "completed", worktree=worktree)
    done = env.codexd("rm", "done")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"removed done and its worktree {tree}, keeping its branch codexd/done\n"
    assert not tree.exists() and not (env.tasks / "done").exists()
    assert "codexd/done" in git("branch", "--list", "codexd/done", cwd=repo)


def test_rm_refuses_a_queued_task_and_a_removed_id_can_be_used_again(env, daemon):
    env.set(CODEXD_CODEX__COMMAND='["/bin/sh", "-c", "cat >/dev/null; sleep 120"]', CODEXD_MAX_PARALLEL="1")
    daemon()
    submit(env, "first")
    wait_for(lambda: state(env, "first") == "in_progress", 10, "first to run")
    submit(env, "second")
    wait_for((env.tasks / "second" / "status.json").exists, 10, "second to be queued")
    done = env.codexd("rm", "first", "second")
    assert done.returncode == 2 and done.stdout == ""
    assert "first is in_progress" in done.stderr and "second is queued" in done.stderr
    assert env.codexd("stop", "first").returncode == 0
    wait_for(lambda: state(env, "second") == "in_progress", 10, "second to run")
    assert env.codexd("rm", "first").stdout == "removed first\n"
    submit(env, "first")  # the id is free again
    assert json.loads(env.codexd("status", "first", "--json").stdout)["status"] == "queued"


# -- progress, status, health -------------------------------------------------------------------


def test_progress_on_an_ended_or_unknown_task_is_refused_in_one_line(env):
    record(env, "over", "completed")
    one_line_refusal(env.codexd("progress", "--task", "over", "--done", "x"), "task over already completed")
    one_line_refusal(env.codexd("progress", "--task", "nope", "--total", "3"), "no task 'nope'")
    env.set(CODEXD_TASK_DIR=str(env.tasks / "over"))
    one_line_refusal(env.codexd("progress", "--current", "y"), "task over already completed")
    assert not (env.tasks / "over" / "reports.jsonl").exists()
    record(env, "live", "in_progress", None)
    assert env.codexd("progress", "--task", "live", "--total", "3").returncode == 0
    assert (env.tasks / "live" / "reports.jsonl").exists()


def test_status_says_no_exit_code_it_does_not_have(env):
    record(env, "stopped", "cancelled", exit_code=None)
    record(env, "ran", "failed", exit_code=3)
    stopped = env.codexd("status", "stopped")
    assert stopped.returncode == 0 and "None" not in stopped.stdout
    assert "finished  2025-10-31T12:00:00Z\n" in stopped.stdout
    assert "exit code 3" in env.codexd("status", "ran").stdout


def test_health_json_is_not_ok_without_a_daemon(env):
    done = env.codexd("health", "--json")
    assert done.returncode == 1
    found = json.loads(done.stdout)
    assert found["ok"] is False and found["daemon"]["pid"] is None
