"""Stall rules, backoff and failure classes: the pure rules, then the supervisor driven by a
fake clock and fake processes, so minutes of task time pass in milliseconds."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from codexd.clock import FakeClock
from codexd.codex import process
from codexd.config.settings import DaemonSettings, HealthSettings, Settings
from codexd.daemon import rules
from codexd.daemon.checkup import Problem
from codexd.daemon.inbox import Findings
from codexd.daemon.processes import Processes
from codexd.daemon.supervisor import Supervisor
from codexd.notify import notices
from codexd.tasks import intake, tasktypes
from codexd.tasks.records import Item, Progress, TaskStatus
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(30)
POLICY = HealthSettings(stall_timeout=900, max_restarts=2, max_retries=3, backoff=10, backoff_max=60)


# -- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("Codex turn failed: exceeded retry limit, last status: 429 Too Many Requests", "transient"),
        ("Codex turn failed: unexpected status 503 Service Unavailable: busy", "transient"),
        ("Codex turn failed: We're currently experiencing high demand, which may cause errors", "transient"),
        ("Codex turn failed: stream disconnected before completion", "transient"),
        ("Codex turn failed: unexpected status 401 Unauthorized: bad key", "auth"),
        ("Codex turn failed: Missing environment variable: `OPENAI_API_KEY`.", "auth"),
        ("Codex exited with code 1: Error: Not logged in. Run codex login", "auth"),
        (
            "Codex exited with code 1: Error: thread/resume failed: no rollout found for thread id x",
            "session_lost",
        ),
        ("Codex turn failed: the model refused", "other"),
        ("Codex was killed by SIGKILL", "other"),
    ],
)
def test_failures_are_classified(error, kind):
    assert rules.classify(error) == kind


def test_backoff_doubles_up_to_the_cap():
    assert [rules.backoff(n, 10, 60) for n in range(1, 6)] == [10, 20, 40, 60, 60]


def test_a_stall_restarts_until_the_restarts_are_used_up():
    first = rules.after_stall(1, 950, 900, POLICY)
    assert (first.action, first.delay) == ("restart", 10)
    assert rules.after_stall(2, 950, 900, POLICY).delay == 20
    last = rules.after_stall(3, 905, 900, POLICY)
    assert last.action == "fail"
    assert last.error == (
        "stalled: no progress for 15m05s (stall_timeout 15m00s), 2 restarts did not help "
        "(health.max_restarts = 2)"
    )


def test_a_busy_endpoint_is_retried_then_the_same_failure_ends_the_task():
    error = "Codex turn failed: exceeded retry limit, last status: 429 Too Many Requests"
    steps = [rules.after_failure(error, streak, POLICY) for streak in range(4)]
    assert [s.action for s in steps] == ["retry", "retry", "retry", "fail"]
    assert [s.delay for s in steps[:3]] == [10, 20, 40]
    assert steps[3].error is not None and "4 times in a row" in steps[3].error


def test_an_auth_failure_fails_at_once_with_the_fix():
    step = rules.after_failure("Codex turn failed: unexpected status 401 Unauthorized", 0, POLICY)
    assert step.action == "fail" and step.error is not None and "codex login" in step.error


def test_the_continuation_prompt_names_what_is_done():
    progress = Progress(total=3, completed=1, current="#602", items=(Item("#626", "approved"),))
    prompt = rules.continuation_prompt("it made no progress", progress)
    assert "interrupted: it made no progress" in prompt
    assert "Already finished: #626." in prompt and "working on: #602" in prompt


# -- the supervisor, with the clock and the processes faked ------------------------------------


class FakeChild:
    """A Codex process that ends when the test (or a kill) says so."""

    pids = iter(range(900_000_001, 900_100_000))  # above any pid_max: never a real process

    def __init__(self, argv: list[str], stdin: bytes = b""):
        self.argv = argv
        self.stdin = stdin  # what Codex would read: the instructions' body, or a resume's prompt
        self.pid = next(self.pids)
        self.code: int | None = None
        self._ended = threading.Event()

    def wait(self) -> int | None:
        self._ended.wait()
        return self.code

    def poll(self) -> int | None:
        return self.code

    def end(self, code: int) -> None:
        self.code = code
        self._ended.set()


class FakeProcesses(Processes):
    """The process backend the supervisor is given: children that end when told, and a
    process table that holds none of them."""

    def __init__(self) -> None:
        self.started: list[FakeChild] = []
        self.kills = 0

    def spawn(self, launch: process.Launch) -> FakeChild:
        stdin = (launch.task_dir / launch.stdin_name).read_bytes()[launch.stdin_offset :]
        child = FakeChild(launch.argv, stdin)
        self.started.append(child)
        return child

    def kill_tree(self, root: Any, task_dir: Path, grace: float, cgroup: Any = None) -> list[Any]:
        self.kills += 1
        for child in self.started:
            if child.code is None:
                child.end(-15)
        return []

    def forget(self, pid: int) -> None:
        pass

    def create_time(self, pid: int) -> float | None:
        return None

    def find(self, pid: int | None, started: float | None, task_id: str) -> Any:
        return None  # a new daemon finds no fake child: its run ended meanwhile

    def by_task(self, tasks_root: Path) -> dict[str, list[Any]]:
        return {}

    def end_adopted(self) -> list[int]:
        return []

    @property
    def current(self) -> FakeChild:
        return self.started[-1]


class World:
    def __init__(self, tmp_path: Path, procs: FakeProcesses, **health_settings: Any):
        self.tmp = tmp_path
        self.procs = procs
        self.clock = FakeClock()
        policy = {"interval": 3600, "stall_timeout": 900, "max_restarts": 2, "backoff": 10, **health_settings}
        self.settings = Settings(
            tasks_dir=tmp_path / "tasks",
            spool_dir=tmp_path / "spool",
            health=HealthSettings(**policy),
            daemon=DaemonSettings(status_interval=0),  # every tick's progress on disk at once
            share_folders=True,  # every task here runs in tmp_path (test_queueorder has the folder rule)
        )
        self.sup = self.new_supervisor()

    def new_supervisor(self) -> Supervisor:
        # Every task read every round: a test says when its events are there, not a file watcher.
        sup = Supervisor(self.settings, clock=self.clock, processes=self.procs, watch_tasks=False)
        sup.start()
        return sup

    def submit(self, text: str = "Do it.\n", task_id: str = "t1") -> str:
        intake.submit(
            text.encode(),
            "t.md",
            tasks=self.sup.tasks,
            spool_dir=self.settings.spool_dir,
            known_types=tasktypes.BUILTIN,
            overrides={"task_id": task_id, "cwd": str(self.tmp)},
        )
        self.sup.schedule.rescan_at = 0.0
        self.tick_until(lambda: self.status(task_id)["status"] == "in_progress")
        return task_id

    def events(self, task_id: str, *events: dict[str, Any]) -> None:
        with (self.settings.tasks_dir / task_id / "events.jsonl").open("a") as f:
            f.writelines(json.dumps(e) + "\n" for e in events)

    def status(self, task_id: str = "t1") -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.settings.tasks_dir / task_id / "status.json").read_text())
        except FileNotFoundError:
            return {"status": None}
        return data

    def log(self, task_id: str = "t1") -> str:
        return (self.settings.tasks_dir / task_id / "progress.log").read_text()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.sup.tick()

    def tick_until(self, done: Callable[[], bool], timeout: float = 5) -> None:
        """Tick (real threads carry exit notices) until `done()`, without moving the clock."""
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "timed out"
            self.sup.step()


@pytest.fixture
def world(tmp_path):
    yield from worlds(tmp_path, FakeProcesses())


def worlds(tmp_path: Path, procs: FakeProcesses) -> Iterator[Callable[..., World]]:
    """Supervisors given `procs` (fake processes), each closed when the test ends."""
    made: list[World] = []

    def make(**health_settings: Any) -> World:
        made.append(World(tmp_path, procs, **health_settings))
        return made[-1]

    yield make
    for w in made:
        w.sup.close()


THREAD = {"type": "thread.started", "thread_id": "th-1"}
COMMAND = {
    "type": "item.started",
    "item": {"id": "i1", "type": "command_execution", "command": "make", "status": "in_progress"},
}
CHATTER = {"type": "error", "message": "Reconnecting... 2/5 (stream disconnected)"}


def test_a_silent_task_is_stalled_at_its_deadline_and_resumed_after_the_backoff(world):
    w = world()
    w.submit()
    w.events("t1", THREAD, COMMAND)  # a long command counts against the same timeout
    w.advance(0)
    w.advance(500)
    w.events("t1", CHATTER)  # retry chatter is not progress
    w.advance(399.9)
    assert w.status()["status"] == "in_progress"
    w.advance(0.1)
    assert w.status()["status"] == "stalled" and w.status()["stalls"] == 1
    assert "Stalled: no progress for 15m00s (stall_timeout 15m00s)" in w.log()
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    assert len(w.procs.started) == 1 and w.procs.kills == 1
    w.advance(9.9)
    assert len(w.procs.started) == 1  # still backing off
    w.advance(0.1)
    argv = w.procs.current.argv
    # The prompt goes through stdin: other users see command lines (/proc/<pid>/cmdline), and
    # the finished items' titles it carries could outgrow the kernel's limit for one argument.
    assert argv[-3:] == ["resume", "th-1", "-"] and b"interrupted" in w.procs.current.stdin
    assert not any("interrupted" in arg for arg in argv)
    status = w.status()
    assert (status["status"], status["restarts"], status["pid"]) == ("in_progress", 1, w.procs.current.pid)
    w.events("t1", {"type": "turn.started"}, {"type": "turn.completed", "usage": {}})
    w.procs.current.end(0)
    w.tick_until(lambda: w.status()["status"] == "completed")


def stall_and_restart(w: World) -> None:
    """A silent task stalls at its 15 minutes and is resumed after the 10 s backoff."""
    w.submit()
    w.advance(900)
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    w.advance(10)


def test_a_task_that_keeps_stalling_fails_when_its_restarts_are_used_up(world):
    w = world(max_restarts=1)
    stall_and_restart(w)
    assert w.status()["restarts"] == 1
    w.advance(900)
    w.tick_until(lambda: w.status()["status"] == "failed")
    status = w.status()
    assert (
        status["error"].startswith("stalled: no progress for 15m00s")
        and "1 restart did not help" in status["error"]
    )
    assert len(w.procs.started) == 2  # a task without a thread id is started afresh
    assert "resume" not in w.procs.started[1].argv


def test_the_front_matter_stall_timeout_wins(world):
    w = world()
    w.submit("+++\nstall_timeout = 60\n+++\nDo it.\n")
    w.advance(59)
    assert w.status()["status"] == "in_progress"
    w.advance(1)
    assert w.status()["status"] == "stalled"


def test_time_the_machine_spent_asleep_is_not_a_stall(world):
    w = world()
    w.submit()
    w.clock.sleep_machine(3600)  # wall time jumps; the monotonic clock does not
    w.advance(10)
    assert w.status()["status"] == "in_progress"


def test_a_busy_endpoint_is_retried_with_backoff_and_not_counted_as_a_stall(world):
    w = world()
    w.submit()
    failed = {
        "type": "turn.failed",
        "error": {"message": "exceeded retry limit, last status: 429 Too Many Requests"},
    }
    w.events("t1", THREAD, {"type": "turn.started"}, failed)
    w.procs.current.end(1)
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    assert w.status()["status"] == "in_progress" and "retrying in 10s (retry 1 of 5)" in w.log()
    w.advance(10)
    assert (w.status()["retries"], w.status()["restarts"], w.status()["stalls"]) == (1, 0, 0)
    assert w.procs.current.argv[-3:] == ["resume", "th-1", "-"]
    w.events("t1", THREAD, {"type": "turn.started"}, failed)
    w.procs.current.end(1)
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    assert "retrying in 20s (retry 2 of 5)" in w.log()


def test_a_new_daemon_honours_a_backoff_that_was_under_way(world):
    w = world()
    w.submit()
    w.advance(900)
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    w.sup.close()
    w.clock.advance(4)  # no daemon for 4 s of the 10 s backoff
    w.sup = w.new_supervisor()
    w.advance(5.9)
    assert len(w.procs.started) == 1
    w.advance(0.1)
    assert len(w.procs.started) == 2 and w.status()["status"] == "in_progress"


def test_stop_while_a_resume_is_owed_cancels_at_once(world):
    w = world()
    w.submit()
    w.advance(900)
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    (w.settings.tasks_dir / ".requests" / "t1.stop").write_text("now")
    w.sup.schedule.rescan_at = 0.0
    w.tick_until(lambda: w.status()["status"] == "cancelled")
    assert w.status()["daemon"]["resume"] is None


def test_restart_by_hand_during_a_backoff_resumes_at_once_and_counts_a_restart(world):
    w = world()
    w.submit()
    failed = {"type": "turn.failed", "error": {"message": "unexpected status 503 Service Unavailable"}}
    w.events("t1", THREAD, {"type": "turn.started"}, failed)
    w.procs.current.end(1)
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    (w.settings.tasks_dir / ".requests" / "t1.restart").write_text("now")
    w.sup.schedule.rescan_at = 0.0
    w.tick_until(lambda: len(w.procs.started) == 2)  # no clock moved: the backoff was skipped
    assert (w.status()["restarts"], w.status()["retries"]) == (1, 0)
    assert (
        w.procs.current.argv[-3:] == ["resume", "th-1", "-"]
        and b"the user restarted it" in w.procs.current.stdin
    )


def test_every_change_is_announced_once_by_name_with_a_stable_key(world):
    w = world()
    heard: list[tuple[str, str]] = []
    w.sup.book.listeners.append(lambda status, event: heard.append((event, notices.key_of(status, event))))
    w.submit()
    w.events("t1", THREAD)
    w.advance(0)
    w.advance(900)
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    w.advance(10)
    (w.settings.tasks_dir / ".requests" / "t1.restart").write_text("now")
    w.sup.schedule.rescan_at = 0.0
    w.tick_until(lambda: len(w.procs.started) == 3)
    w.events("t1", {"type": "turn.started"}, {"type": "turn.completed", "usage": {}})
    w.procs.current.end(0)
    w.tick_until(lambda: w.status()["status"] == "completed")
    assert heard == [
        ("queued", "t1.queued"),
        ("started", "t1.started"),
        ("stalled", "t1.stalled.1"),
        ("restarted", "t1.restarted.1"),  # after the stall
        ("restarted", "t1.restarted.2"),  # by hand
        ("completed", "t1.completed"),
    ]


def test_a_run_that_no_daemon_recorded_is_finished_from_its_log_not_run_again(world):
    w = world()
    w.sup.close()
    folder = w.settings.tasks_dir / "t9"
    folder.mkdir()
    (folder / "instructions.md").write_text("Do it.\n")
    w.sup.tasks.write_status(
        TaskStatus("t9", "generic", TaskState.QUEUED, "2025-10-31T12:00:00Z", "2025-10-31T12:00:00Z", "-")
    )
    w.events("t9", THREAD, {"type": "turn.started"}, {"type": "turn.completed", "usage": {}})
    w.sup = w.new_supervisor()  # the daemon that started it died before recording the start
    w.tick_until(lambda: w.status("t9")["status"] == "completed")
    assert w.procs.started == []  # finished from its event log, not run a second time
    assert "Codex ran while no daemon recorded it" in w.log("t9")


def test_the_health_job_keeps_its_report_and_hands_the_loop_only_its_findings(world):
    w = world()
    w.submit()
    w.sup._health_job()  # (as APScheduler's thread runs it)
    report = json.loads((w.settings.tasks_dir / ".health.json").read_text())
    assert [(f["task_id"], f["kind"]) for f in report["findings"]] == [("t1", "dead")]  # a fake child
    posted = [m for m in w.sup.inbox.drain() if isinstance(m, Findings)]
    assert posted and [(f.task_id, f.kind) for f in posted[-1].findings] == [("t1", Problem.DEAD)]
    rescan_at = w.sup.schedule.rescan_at
    w.sup._handle(posted[-1], w.clock.now())
    assert w.sup.schedule.rescan_at == rescan_at  # the spool is rescanned on its own deadline
    assert w.status()["status"] == "in_progress"  # the loop knows better: its child runs
