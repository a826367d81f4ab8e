"""`codexd monitor` in a real terminal (tmux), its refusals, and `codexd logs` on big files."""

from __future__ import annotations

import shlex
import subprocess
import time
import uuid

import pytest

from codexd.tasks import store
from codexd.tasks.records import LastLog, Progress, TaskStatus
from codexd.tasks.states import TaskState
from tests.conftest import CODEXD, wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(60)]


def make_task(env, task_id: str = "t1", state: TaskState = TaskState.IN_PROGRESS) -> store.TaskStore:
    tasks = store.TaskStore(env.tasks)
    tasks.dir(task_id).mkdir(parents=True, exist_ok=True)
    tasks.write_status(
        TaskStatus(
            task_id,
            "pr_review",
            state,
            "2025-10-31T11:50:00Z",
            "2025-10-31T12:00:00Z",
            log_file="-",
            started_at="2025-10-31T11:50:01Z",
            progress=Progress(total=19, completed=5, current="#602 - crossterm upgrade"),
            last_log=LastLog("2025-10-31T11:59:45Z", "Running: gh pr diff 602"),
        )
    )
    return tasks


class Terminal:
    """A tmux session of its own, 100x30, running one command."""

    def __init__(self, env, command: list[str]):
        self.socket = f"codexd-test-{uuid.uuid4().hex[:8]}"
        script = env.root / "run.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.vars.items() if k.isidentifier())
        script.write_text(
            f"{exports}cd {shlex.quote(str(env.root))}\n{shlex.join(command)}\necho EXIT $?\nsleep 60\n"
        )
        self.tmux("new-session", "-d", "-x", "100", "-y", "30", f"bash {shlex.quote(str(script))}")

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def shows(self, words: str, timeout: float = 15) -> str:
        return wait_for(lambda: words in (s := self.screen()) and s, timeout, f"{words!r} on screen")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def close(self) -> None:
        self.tmux("kill-server")


def test_monitor_in_a_real_terminal(env):
    make_task(env)
    store.append_line(env.tasks / "t1" / "progress.log", "2025-10-31T11:59:45Z Running: gh pr diff 602")
    term = Terminal(env, [*CODEXD, "monitor", "t1"])
    try:
        screen = term.shows("5/19 (26.3%)")
        assert "t1" in screen and "Current: #602 - crossterm upgrade" in screen
        assert "Last log: [" in screen and "] Running: gh pr diff 602" in screen
        assert "Status: IN PROGRESS" in screen and "[R]efresh | [L]ogs | [S]top | [Q]uit" in screen
        term.keys("L")  # upper case, as the key line shows it
        term.shows("t1: progress.log")
        term.keys("Q")
        term.shows("EXIT 0")
    finally:
        term.close()


def test_monitor_refuses_what_it_cannot_show(env):
    ghost = env.codexd("monitor", "ghost")
    assert ghost.returncode == 2 and ghost.stderr.startswith("codexd: no task 'ghost'")
    assert ghost.stdout == "" and len(ghost.stderr.splitlines()) == 1
    raw = env.codexd("monitor", "--raw")
    assert raw.returncode == 2 and "--raw shows one task's events" in raw.stderr
    make_task(env)
    piped = env.codexd("monitor", "t1")  # no terminal
    assert piped.returncode == 2 and "needs a terminal" in piped.stderr


def test_logs_n_reads_the_end_of_a_huge_log_only(env):
    make_task(env, state=TaskState.COMPLETED)
    log = env.tasks / "t1" / "progress.log"
    with log.open("wb") as f:
        f.truncate(1 << 30)  # 1 GiB (sparse): reading it all would take seconds
        f.seek(1 << 30)
        f.write(b"".join(b"2025-10-31T12:00:00Z line %d\n" % i for i in range(100)))
    began = time.monotonic()
    done = env.codexd("logs", "t1", "-n", "20")
    took = time.monotonic() - began
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"2025-10-31T12:00:00Z line {i}" for i in range(80, 100)]
    print(f"logs -n 20 on a 1 GiB log: {took * 1000:.0f} ms (process start included)")


def test_logs_follow_keeps_up_and_ends_with_the_task(env):
    tasks = make_task(env)
    log = env.tasks / "t1" / "progress.log"
    log.write_text("".join(f"old {i}\n" for i in range(100)))
    follower = subprocess.Popen(
        [*CODEXD, "logs", "t1", "--follow"], env=env.vars, stdout=subprocess.PIPE, text=True, cwd=env.root
    )
    try:
        first = [follower.stdout.readline().strip() for _ in range(20)]
        assert first == [f"old {i}" for i in range(80, 100)]  # the last 20, at once
        delays = []
        for i in range(5):
            written = time.monotonic()
            store.append_line(log, f"new {i}")
            assert follower.stdout.readline().strip() == f"new {i}"
            delays.append(time.monotonic() - written)
        status = tasks.read_status("t1")
        tasks.write_status(status.with_(status=TaskState.COMPLETED, finished_at="2025-10-31T12:10:00Z"))
        assert follower.wait(5) == 0
        print(f"logs --follow delays: max {max(delays) * 1000:.0f} ms")
        assert max(delays) < 1.0, delays
    finally:
        if follower.poll() is None:
            follower.kill()
