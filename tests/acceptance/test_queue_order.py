"""`codexd start --after/--priority` and spool files with `after`, as a user meets them:
refused with one line, kept across a daemon restart, shown by `status` and `list`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(90)]

# A "codex" that works until its task folder has a file `go`, then finishes its turn.
UNTIL_GO = json.dumps(
    [
        "/bin/sh",
        "-c",
        'cat >/dev/null; while [ ! -e "$CODEXD_TASK_DIR/go" ]; do sleep 0.05; done; '
        'echo \'{"type":"turn.started"}\'; echo \'{"type":"turn.completed","usage":{}}\'',
    ]
)
UNKNOWN = (
    "codexd: unknown task id 'nope' in after: no task has that id; "
    "see `codexd list` and submit that task first"
)


def start(env, task_id: str, *args: str) -> None:
    done = env.codexd("start", "--instructions", "-", "--task-id", task_id, *args, input=b"Do it.\n")
    assert done.returncode == 0, done.stderr


def test_an_unknown_dependency_is_refused_with_one_line_and_nothing_is_queued(env):
    done = env.codexd("start", "--instructions", "-", "--after", "nope", input=b"Do it.\n")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [UNKNOWN]
    assert not env.spool.exists() or not list(env.spool.glob("*.md"))


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--after", "bad id"], "front matter after: 'bad id' is not a task id"),
        (["--task-id", "me", "--after", "me"], "front matter after names the task itself (me)"),
        (["--priority", "1001"], "1001 is not in the range -1000<=x<=1000"),
        (["--priority", "high"], "'high' is not a valid integer"),
    ],
)
def test_bad_order_options_are_refused_with_exit_2(env, args, said):
    done = env.codexd("start", "--instructions", "-", *args, input=b"Do it.\n")
    assert done.returncode == 2, done.stderr
    assert said in done.stderr


def test_a_spool_file_after_an_unknown_task_is_rejected_saying_so(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=UNTIL_GO)
    daemon()
    env.spool.joinpath("b.md").write_text('+++\nafter = ["nope"]\n+++\nDo it.\n')
    note = env.spool / "rejected" / "b.md.error"
    wait_for(note.exists, 20, "the file to be rejected")
    assert UNKNOWN.removeprefix("codexd: ") in note.read_text()
    assert not (env.tasks / "b").exists()


def test_a_task_after_another_waits_across_a_daemon_restart_then_runs(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=UNTIL_GO)
    first = daemon()
    start(env, "a")
    wait_for(lambda: env.status("a")["status"] == "in_progress", 20, "a to run")
    start(env, "b", "--after", "a", "--priority", "5")
    waiting = wait_for(lambda: env.status("b").get("waiting"), 20, "b to wait")
    assert waiting["reason"] == "waiting for a (in_progress)"
    shown = env.codexd("status", "b").stdout
    assert "waiting   waiting for a (in_progress)" in shown and "after     a" in shown
    assert "priority  5" in shown
    listed = env.codexd("list").stdout
    assert "queued (after a; priority 5)" in listed
    assert first.stop() == 0  # one SIGTERM (a second one means "stop now": exit 143)
    daemon()  # a is adopted, still running; b still waits
    assert env.status("b")["status"] == "queued" and env.status("b")["after"] == ["a"]
    (env.tasks / "a" / "go").touch()
    wait_for(lambda: env.status("a")["status"] == "completed", 20, "a to complete")
    wait_for(lambda: env.status("b")["status"] == "in_progress", 20, "b to start after a")
    (env.tasks / "b" / "go").touch()
    wait_for(lambda: env.status("b")["status"] == "completed", 20, "b to complete")
