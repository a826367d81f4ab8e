"""The daemon's own life as a service manager sees it: signals, reloads, sd_notify, health."""

from __future__ import annotations

import json
import signal
import socket
import time

import psutil
import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(60)]

# A "codex" that ignores SIGTERM, and says when it does: a signal that comes before the trap
# (Codex is started through a short launcher on Linux) would end it at once.
STUBBORN = '["/bin/sh", "-c", "trap \\"\\" TERM; touch \\"$CODEXD_TASK_DIR/trapped\\"; sleep 120"]'


def stubborn_running(env, task_id: str = "t1") -> None:
    wait_for((env.tasks / task_id / "trapped").exists, 10, "the stubborn task to ignore SIGTERM")


def start_task(env, task_id: str = "t1") -> str:
    done = env.codexd("start", "--instructions", "-", "--task-id", task_id, input=b"Do it.\n")
    assert done.returncode == 0, done.stderr
    return task_id


def running(env, task_id: str) -> dict:
    return wait_for(
        lambda: (
            (env.tasks / task_id / "status.json").exists()
            and (s := env.status(task_id))["status"] == "in_progress"
            and s
        ),
        10,
        f"{task_id} to run",
    )


def test_health_reports_the_daemon_and_each_task(env, daemon):
    alone = env.codexd("health")
    assert alone.returncode == 1 and "daemon: not running" in alone.stdout
    env.set(CODEXD_CODEX__COMMAND='["/bin/sh", "-c", "sleep 120"]')
    daemon()
    start_task(env)
    pid = running(env, "t1")["pid"]
    wait_for((env.tasks / ".health.json").exists, 10, "the start-up health check")
    done = env.codexd("health")
    assert done.returncode == 0, done.stdout
    assert "problems: none" in done.stdout and f"t1  in_progress  pid {pid} alive" in done.stdout
    found = json.loads(env.codexd("health", "--json").stdout)
    assert found["ok"] and found["daemon"]["pid"] and found["daemon"]["last_check"]
    assert [(t["task_id"], t["alive"]) for t in found["tasks"]] == [("t1", True)]


def test_health_names_a_stalled_task_and_leftover_processes(env):
    """No daemon runs, so nothing is fixed behind the check's back."""
    env.set(CODEXD_HEALTH__STALL_TIMEOUT="1")
    task_dir = env.tasks / "old"
    task_dir.mkdir(parents=True)
    leftover = psutil.Popen(
        ["sleep", "60"], env={**env.vars, "CODEXD_TASK_ID": "old", "CODEXD_TASK_DIR": str(task_dir)}
    )
    try:
        status = {
            "task_id": "old",
            "type": "generic",
            "status": "completed",
            "created_at": "2025-10-31T11:50:00Z",
            "updated_at": "2025-10-31T11:50:00Z",
        }
        (task_dir / "status.json").write_text(json.dumps(status))
        active = dict(status, task_id="busy", status="in_progress", started_at="2025-10-31T11:50:00Z", pid=1)
        (env.tasks / "busy").mkdir()
        (env.tasks / "busy" / "status.json").write_text(json.dumps(active))
        done = env.codexd("health")
        assert done.returncode == 1
        assert f"old: 1 process(es) left over after the task ended (pids {leftover.pid})" in done.stdout
        assert "busy: its Codex process (pid 1) is gone" in done.stdout
    finally:
        leftover.kill()
        leftover.wait()


def test_restart_refuses_what_cannot_be_restarted(env, daemon):
    env.set(CODEXD_CODEX__COMMAND='["/nonexistent/codex"]')
    start_task(env, "queued-one")
    refused = env.codexd("restart", "queued-one")
    assert refused.returncode == 2 and "has not started: nothing to restart" in refused.stderr
    daemon()
    wait_for(lambda: env.codexd("wait", "queued-one").returncode == 1, 10, "the task to fail")
    refused = env.codexd("restart", "queued-one")
    assert refused.returncode == 2 and "already failed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_sighup_reloads_the_settings_and_keeps_them_when_the_file_is_broken(env, daemon):
    config = env.root / "config.toml"
    config.write_text('[codex]\ncommand = ["/nonexistent/first"]\n')
    d = daemon()
    config.write_text('[codex]\ncommand = ["/nonexistent/second"]\n')
    d.signal(signal.SIGHUP)
    wait_for(lambda: "settings.reloaded" in d.output(), 10, "the reload")
    start_task(env, "after-reload")
    assert env.codexd("wait", "after-reload", "--timeout", "10").returncode == 1
    assert "/nonexistent/second not found" in env.status("after-reload")["error"]
    config.write_text("max_parallel = 0\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: "settings.reload_failed" in d.output(), 10, "the refused reload")
    assert d.proc.poll() is None
    start_task(env, "still-second")
    assert env.codexd("wait", "still-second", "--timeout", "10").returncode == 1
    assert "/nonexistent/second not found" in env.status("still-second")["error"]


def test_stop_tasks_ends_running_tasks_with_the_daemon(env, daemon):
    env.set(CODEXD_CODEX__COMMAND='["/bin/sh", "-c", "sleep 120"]')
    d = daemon("--stop-tasks")
    start_task(env)
    pid = running(env, "t1")["pid"]
    assert d.stop() == 0
    assert env.status("t1")["status"] == "cancelled"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_second_signal_exits_at_once(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=STUBBORN, CODEXD_DAEMON__STOP_GRACE="30")
    d = daemon("--stop-tasks")
    start_task(env)
    stubborn_running(env)
    d.signal(signal.SIGTERM)
    wait_for(lambda: "daemon.stopping" in d.output(), 5, "the shutdown to begin")
    time.sleep(0.3)  # into the 30 s grace of the stubborn task
    d.signal(signal.SIGTERM)
    assert d.proc.wait(5) == 128 + signal.SIGTERM


def test_a_shutdown_that_hangs_is_cut_short_after_stop_timeout(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=STUBBORN, CODEXD_DAEMON__STOP_GRACE="30", CODEXD_DAEMON__STOP_TIMEOUT="1")
    d = daemon("--stop-tasks")
    start_task(env)
    stubborn_running(env)
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.proc.wait(10) == 1
    assert time.monotonic() - started < 5
    assert "daemon.stop_timeout" in d.output()


def test_systemd_hears_ready_watchdog_and_stopping(env, daemon, tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        env.set(NOTIFY_SOCKET=str(path), WATCHDOG_USEC="200000")
        d = daemon()
        heard = [sock.recv(4096).decode() for _ in range(3)]
        assert heard[0].startswith("READY=1")
        assert heard[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        d.signal(signal.SIGTERM)
        while (message := sock.recv(4096).decode()) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
        assert d.proc.wait(10) == 0
