"""The daemon's folders are its own: a tasks_dir others can write into is refused at start-up
and by `doctor`, and one spool belongs to one daemon (and one tasks_dir) at a time."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import CODEXD, ROOT, wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(90)]


def run_daemon(env, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`codexd daemon` that is expected to refuse: it must exit by itself."""
    return subprocess.run(
        [*CODEXD, "daemon"], env=env.vars, capture_output=True, text=True, timeout=timeout, check=False
    )


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("folder", ["tasks", "tasks/.requests", "spool"])
def test_a_folder_others_can_write_into_stops_the_daemon_with_one_line(env, folder):
    path = env.root / folder
    path.mkdir(parents=True)
    os.chmod(path, 0o777)
    done = run_daemon(env)
    assert done.returncode == 1, done.stderr
    line = one_line(done.stderr)
    assert str(path) in line and "writable by others" in line and f"chmod 700 {path}" in line


def test_doctor_shows_a_tasks_dir_others_can_write_into_as_a_problem(env):
    env.tasks.mkdir()
    os.chmod(env.tasks, 0o770)
    done = env.codexd("doctor")
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if "tasks_dir:" in x)
    assert line.startswith("FAIL") and "writable by others" in line and f"chmod 700 {env.tasks}" in line
    os.chmod(env.tasks, 0o700)
    (env.tasks / ".requests").mkdir(mode=0o777)
    os.chmod(env.tasks / ".requests", 0o777)
    line = next(x for x in env.codexd("doctor").stdout.splitlines() if "tasks_dir:" in x)
    assert line.startswith("FAIL") and f"chmod 700 {env.tasks / '.requests'}" in line, line
    os.chmod(env.tasks / ".requests", 0o700)
    line = next(x for x in env.codexd("doctor").stdout.splitlines() if "tasks_dir:" in x)
    assert line.startswith("ok"), line


def other_world(env, name: str) -> dict[str, str]:
    return {**env.vars, "CODEXD_TASKS_DIR": str(env.root / name)}


def test_a_second_daemon_on_a_taken_spool_is_refused_whatever_its_tasks_dir(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(ROOT / "bench" / "fake-codex")]))
    first = daemon()
    done = subprocess.run(
        [*CODEXD, "daemon"],
        env=other_world(env, "tasks-b"),
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    line = one_line(done.stderr)
    assert f"pid {first.proc.pid}" in line and str(env.tasks) in line, line
    assert "give this daemon its own spool_dir" in line
    for n in range(20):  # the repro: every dropped file goes to the one daemon
        (env.spool / f"drop-{n}.md").write_text("Do it.\n")
    wait_for(lambda: all((env.tasks / f"drop-{n}").is_dir() for n in range(20)), 30, "all 20 taken")
    assert not (env.root / "tasks-b").exists() or not any((env.root / "tasks-b").glob("drop-*"))
    assert first.proc.poll() is None


def test_start_refuses_to_hand_a_task_to_the_daemon_of_another_tasks_dir(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(ROOT / "bench" / "fake-codex")]))
    first = daemon()
    instructions = env.write("job.md", "Do it.\n")
    done = subprocess.run(
        [*CODEXD, "start", "--instructions", str(instructions)],
        env=other_world(env, "tasks-b"),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        cwd=env.root,
    )
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert f"pid {first.proc.pid}" in line and str(env.tasks) in line and "spool_dir" in line
    assert not list(env.spool.glob("*.md"))  # nothing handed over
    same = env.codexd("start", "--instructions", str(instructions), "--task-id", "mine")
    assert same.returncode == 0, same.stderr
    wait_for((env.tasks / "mine" / "status.json").exists, 15, "the task of the right daemon")


def test_a_stopped_daemon_frees_the_spool_for_another(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(ROOT / "bench" / "fake-codex")]))
    assert daemon().stop() == 0
    log = (env.root / "second.log").open("ab")
    second = subprocess.Popen([*CODEXD, "daemon"], env=other_world(env, "tasks-b"), stdout=log, stderr=log)
    try:
        (env.spool / "later.md").write_text("Do it.\n")
        wait_for((env.root / "tasks-b" / "later").is_dir, 15, "the new daemon takes it")
    finally:
        second.kill()
        second.wait(5)
        log.close()


def test_a_link_in_place_of_the_spool_lock_is_refused_in_one_line(env):
    env.spool.mkdir(mode=0o700)
    (env.spool / ".daemon.lock").symlink_to(env.root / "elsewhere")
    done = run_daemon(env)
    assert done.returncode == 1, done.stderr
    assert "lock file" in one_line(done.stderr) and not (env.root / "elsewhere").exists()


def test_doctor_warns_when_others_can_read_a_settings_file_that_holds_notification_urls(env):
    config = env.root / "config.toml"
    config.write_text('[notify]\nurls = ["json://127.0.0.1:9/secret-hook"]\n')
    os.chmod(config, 0o644)
    said = env.codexd("doctor").stdout
    line = next(x for x in said.splitlines() if "settings file" in x)
    assert line.startswith("warn") and "readable by others" in line and f"chmod 600 {config}" in line
    assert "secret-hook" not in said
    os.chmod(config, 0o600)
    assert "settings file" not in env.codexd("doctor").stdout
