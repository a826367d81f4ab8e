"""codexd run as a user runs it: as a process, with its exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.conftest import wait_for
from tests.fake_model import Say

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(60)]


def one_line_error(done, code: int, *words: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_start_without_a_daemon_leaves_the_task_waiting_in_the_spool(env):
    path = env.write("Review PRs.md", "Review the PRs.\n")
    done = env.codexd("start", "--instructions", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Review-PRs\n"
    assert "no daemon is running" in done.stderr
    spooled = (env.spool / "Review-PRs.md").read_text()
    assert 'task_id = "Review-PRs"' in spooled and "Review the PRs." in spooled
    assert oct(env.spool.stat().st_mode & 0o777) == "0o700"
    shown = env.codexd("status", "Review-PRs", "--json")
    assert json.loads(shown.stdout)["status"] == "queued"
    again = env.codexd("start", "--instructions", str(path))
    assert again.stdout == "Review-PRs-2\n"  # made unique
    timed_out = env.codexd("wait", "Review-PRs", "--timeout", "0.2")
    assert timed_out.returncode == 124


def test_start_reads_stdin_and_takes_flags(env):
    done = env.codexd(
        "start",
        "--instructions",
        "-",
        "--task-id",
        "from-stdin",
        "--type",
        "pr_review",
        "--cwd",
        str(env.root),
        input=b"Review.\n",
    )
    assert done.returncode == 0 and done.stdout == "from-stdin\n", done.stderr
    text = (env.spool / "from-stdin.md").read_text()
    assert 'type = "pr_review"' in text and f'cwd = "{env.root}"' in text


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["start", "--instructions", "missing.md"], ["missing.md", "does not exist"]),
        (["start", "--instructions", "ok.md", "--task-id", "../etc"], ["invalid task id"]),
        (["start", "--instructions", "ok.md", "--type", "nope"], ["unknown task type 'nope'"]),
        (["start", "--instructions", "ok.md", "--cwd", "no/such/dir"], ["is not an existing folder"]),
        (["start", "--instructions", "bad.md"], ["front matter is not valid TOML"]),
        (["start"], ["--instructions"]),
        (["status", "ghost"], ["no task 'ghost'", "codexd list"]),
        (["results", "ghost"], ["no task 'ghost'"]),
        (["logs", "ghost"], ["no task 'ghost'"]),
        (["wait", "ghost"], ["no task 'ghost'"]),
        (["stop", "ghost"], ["no task 'ghost'"]),
        (["restart", "ghost"], ["no task 'ghost'"]),
        (["health", "--bogus"], ["No such option"]),
        (["progress", "--total", "3"], ["CODEXD_TASK_DIR is not set"]),
        (["progress", "--outcome", "approved"], ["--outcome goes with --done"]),
        (["status"], ["Missing argument"]),
        (["frobnicate"], ["No such command"]),
        (["--config", "nowhere.toml", "list"], ["nowhere.toml does not exist"]),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(env, args, words):
    env.write("ok.md", "Do it.\n")
    env.write("bad.md", "+++\ntask_id = \n+++\nDo it.\n")
    one_line_error(env.codexd(*args), 2, *words)


def test_a_taken_task_id_is_refused(env):
    path = env.write("a.md", "Do it.\n")
    assert env.codexd("start", "--instructions", str(path), "--task-id", "dup").returncode == 0
    one_line_error(env.codexd("start", "--instructions", str(path), "--task-id", "dup"), 2, "already taken")


def test_config_check_lists_every_problem(env):
    config = env.write("bad.toml", "max_parallel = 0\ncolour = 'red'\n[health]\nstall_timeout = -5\n")
    done = env.codexd("--config", str(config), "config", "check")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert any("max_parallel: Input should be greater than or equal to 1" in line for line in lines)
    assert any("health.stall_timeout: Input should be greater than 0" in line for line in lines)
    assert any("colour: unknown setting" in line for line in lines)
    broken = env.write("broken.toml", "max_parallel = [\n")
    one_line_error(env.codexd("--config", str(broken), "config", "check"), 2, "not valid TOML")
    env.set(CODEXD_MAX_PARALLEL="7")
    good = env.write("good.toml", '[notify]\nurls = ["slack://T000/B000/secret-token"]\n')
    shown = env.codexd("--config", str(good), "config", "show")
    assert shown.returncode == 0 and "secret-token" not in shown.stdout
    assert json.loads(shown.stdout)["max_parallel"] == 7  # the environment wins over the file


def test_spool_drops_are_taken_and_refusals_explained(env, model_world, daemon):
    model_world({"ok": [Say("fine")]})
    env.spool.mkdir(mode=0o700)
    (env.spool / "before.md").write_text("SCENARIO: ok\nDropped before the daemon started.\n")
    d = daemon()
    drops = {
        "bad-toml.md": b"+++\nthis is = = not toml\n+++\nDo it.\n",
        "unknown-key.md": b"+++\ncolour = 'red'\n+++\nDo it.\n",
        "bad-id.md": b"+++\ntask_id = '../../escape'\n+++\nDo it.\n",
        "taken.md": b"+++\ntask_id = 'before'\n+++\nDo it.\n",
        "latin1.md": "Caf\xe9 au lait\n".encode("latin-1"),
        "huge.md": b"x" * (1024 * 1024 + 1),
        "notes.txt": b"Do it.\n",
        "empty.md": b"+++\ntype = 'generic'\n+++\n\n",
    }
    reasons = {
        "bad-toml.md": "not valid TOML",
        "unknown-key.md": "unknown front matter key(s) colour",
        "bad-id.md": "invalid task id",
        "taken.md": "already taken",
        "latin1.md": "not UTF-8",
        "huge.md": "over the 1 MiB limit",
        "notes.txt": "only .md instruction files",
        "empty.md": "no instructions",
        "link.md": "symbolic link",
    }
    wait_for((env.tasks / "before" / "status.json").exists, 10, "the file dropped before start-up")
    target = env.write("elsewhere.md", "Do it.\n")
    os.symlink(target, env.spool / "link.md")
    for name, data in drops.items():
        (env.spool / name).write_bytes(data)
    (env.spool / ".hidden.md").write_text("Do it.\n")
    (env.spool / "writing.md.part").write_text("Do it.\n")
    rejected = env.spool / "rejected"
    for name, reason in reasons.items():
        error = wait_for(
            lambda n=name: (rejected / f"{n}.error").exists() and (rejected / f"{n}.error"), 10, name
        )
        assert reason in error.read_text(), (name, error.read_text())
        assert (rejected / name).exists() or (rejected / name).is_symlink()
    assert (env.spool / ".hidden.md").exists() and (env.spool / "writing.md.part").exists()
    os.rename(env.spool / "writing.md.part", env.spool / "now-ready.md")
    wait_for((env.tasks / "now-ready" / "status.json").exists, 10, "the renamed file")
    assert not (env.spool / "now-ready.md").exists()
    assert (env.tasks / "now-ready" / "instructions.md").read_text() == "Do it.\n"
    assert d.proc.poll() is None, "the daemon must survive hostile files"
    assert d.stop() == 0


def test_daemon_refuses_an_unsafe_spool_and_a_second_daemon(env, daemon):
    env.spool.mkdir(mode=0o700)
    os.chmod(env.spool, 0o777)
    refused = env.codexd("daemon", timeout=20)
    one_line_error(refused, 1, "writable by others", "chmod 700")
    os.chmod(env.spool, 0o700)
    first = daemon()
    second = env.codexd("daemon", timeout=20)
    one_line_error(second, 1, f"pid {first.proc.pid}")
    first.signal(signal.SIGTERM)
    assert first.proc.wait(10) == 0


def test_doctor_says_what_is_wrong(env):
    env.set(CODEXD_CODEX__COMMAND='["no-such-codex-binary"]')
    done = env.codexd("doctor")
    assert done.returncode == 1
    assert "FAIL  codex: no-such-codex-binary not found" in done.stdout
    assert "ok    tasks_dir" in done.stdout


def test_doctor_finds_the_real_codex(env, model_world):
    model_world({})
    done = env.codexd("doctor")
    assert done.returncode == 0, done.stdout
    assert "codex-cli 0.169.0" in done.stdout


def test_a_missing_codex_fails_the_task_with_the_fix(env, daemon):
    env.set(CODEXD_CODEX__COMMAND='["/nonexistent/codex"]')
    daemon()
    task_id = env.codexd("start", "--instructions", "-", input=b"Do it.\n").stdout.strip()
    # results.json is written before the final status, so the status is what to wait on
    final = wait_for(
        lambda: (
            (env.tasks / task_id / "status.json").exists()
            and (s := env.status(task_id))["status"] != "queued"
            and s
        ),
        10,
        "the failure",
    )
    assert final["status"] == "failed"
    assert "/nonexistent/codex not found" in final["error"] and "codex.command" in final["error"]
    assert json.loads(env.codexd("results", task_id).stdout)["error"] == final["error"]


def test_stop_cancels_running_and_queued_tasks(env, daemon):
    env.set(CODEXD_CODEX__COMMAND='["/bin/sh", "-c", "sleep 120"]', CODEXD_MAX_PARALLEL="1")
    daemon()
    first = env.codexd("start", "--instructions", "-", "--task-id", "first", input=b"Do it.\n").stdout.strip()
    second = env.codexd(
        "start", "--instructions", "-", "--task-id", "second", input=b"Do it.\n"
    ).stdout.strip()
    wait_for(lambda: env.status(first)["status"] == "in_progress", 10, "the first task to run")
    wait_for((env.tasks / second / "status.json").exists, 10, "the daemon to take in the second task")
    assert env.status(second)["status"] == "queued"
    stopped = env.codexd("stop", second)
    assert stopped.returncode == 0 and stopped.stdout == "second cancelled\n", stopped.stderr
    stopped = env.codexd("stop", first)
    assert stopped.returncode == 0 and stopped.stdout == "first cancelled\n", stopped.stderr
    assert env.codexd("wait", first).returncode == 1
    again = env.codexd("stop", first)
    assert again.returncode == 0 and "already cancelled" in again.stdout
    assert json.loads((env.tasks / second / "results.json").read_text()) == {"summary": None}
