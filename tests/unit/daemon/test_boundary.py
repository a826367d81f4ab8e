"""The daemon's one total boundary: a bug while handling one task ends that task, never the
daemon; runs that end at once cannot loop; side threads that die are redone. The supervisor
is driven with a fake clock and fake processes (see test_health)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from codexd.codex import process
from codexd.daemon import follower, kernelwatch, rules, runs, taskwatch
from codexd.daemon.inbox import Exited
from codexd.daemon.polledwatch import PolledFolderWatcher
from codexd.daemon.watcher import FolderWatcher
from codexd.errors import StorageError
from codexd.tasks import intake, store, tasktypes
from tests.unit.daemon.test_supervisor import THREAD, FakeProcesses, World, worlds

pytestmark = pytest.mark.timeout(30)
LOST = "Error: thread/resume failed: no rollout found for thread id th-1\n"


class TaskProcesses(FakeProcesses):
    """Fake processes whose kill ends only the task's own (FakeProcesses ends them all)."""

    def __init__(self) -> None:
        super().__init__()
        self.owners: dict[int, str] = {}

    def spawn(self, launch: process.Launch) -> Any:
        child = super().spawn(launch)
        self.owners[child.pid] = launch.task_id
        return child

    def kill_tree(self, root: Any, task_dir: Path, grace: float, cgroup: Any = None) -> list[Any]:
        self.kills += 1
        for child in self.started:
            if child.code is None and self.owners[child.pid] == task_dir.name:
                child.end(-15)
        return []


@pytest.fixture
def world(tmp_path):
    yield from worlds(tmp_path, TaskProcesses())


def breaks_for(monkeypatch, task_id: str, error: BaseException) -> list[str]:
    """follower.advance raises `error` for one task (a malformed event, say); counts the calls."""
    calls: list[str] = []
    real = follower.advance

    def advance(task_dir: Path, status: Any, *prices: Any) -> Any:
        if status.task_id == task_id:
            calls.append(task_id)
            raise error
        return real(task_dir, status, *prices)

    monkeypatch.setattr(follower, "advance", advance)
    return calls


def stderr(w: World, task_id: str, text: str) -> None:
    with (w.settings.tasks_dir / task_id / "stderr.log").open("a") as f:
        f.write(text)


# -- one task's bug is that task's failure ----------------------------------------------------


def test_an_unexpected_error_in_one_task_fails_that_task_and_the_others_go_on(world, monkeypatch):
    w = world()
    w.submit(task_id="bad")
    w.submit(task_id="good")
    w.events("bad", THREAD, {"type": "turn.started"})
    calls = breaks_for(monkeypatch, "bad", AttributeError("'NoneType' object has no attribute 'get'"))
    with structlog.testing.capture_logs() as logged:
        for _ in range(5):
            w.advance(0)
    status = w.status("bad")
    assert status["status"] == "failed"
    assert status["error"] == (
        "internal error: AttributeError: 'NoneType' object has no attribute 'get' while following "
        "its events (see the daemon log)"
    )
    assert len(calls) == rules.STRIKES  # tried again, then given up, not every tick for ever
    events = w.settings.tasks_dir / "bad" / "events.jsonl"
    assert status["daemon"]["events"] == events.stat().st_size  # a new daemon does not hit it again
    errors = [e for e in logged if e["event"] == "task.internal_error"]
    assert len(errors) == 1 and errors[0]["task_id"] == "bad" and errors[0]["exc_info"]
    assert errors[0]["action"] == "follow"
    assert "bad" not in w.sup.running
    w.tick_until(lambda: w.procs.kills >= 1)  # its tree is ended
    assert w.status("good")["status"] == "in_progress"
    w.events("good", {"type": "turn.started"}, {"type": "turn.completed", "usage": {}})
    w.procs.started[1].end(0)
    w.tick_until(lambda: w.status("good")["status"] == "completed")


def test_a_bug_in_judging_a_runs_end_is_tried_again_then_fails_the_task(world, monkeypatch):
    w = world()
    w.submit()
    judged: list[int] = []

    def decide(*args: Any) -> Any:
        judged.append(1)
        raise KeyError("turn")

    monkeypatch.setattr(runs.outcome, "decide", decide)
    w.procs.current.end(1)
    w.tick_until(lambda: w.status()["status"] == "failed")
    assert (
        w.status()["error"]
        == "internal error: KeyError: 'turn' while handling the end of its run (see the daemon log)"
    )
    assert len(judged) == rules.STRIKES + 1  # the exit, then finish_exit until it gives up
    assert "t1" not in w.sup.running


def test_a_task_that_cannot_even_be_ended_leaves_the_books_and_frees_its_slot(world, monkeypatch):
    w = world()
    w.settings.max_parallel = 1
    w.submit(task_id="bad")
    queue_next(w)
    assert w.status("next")["status"] == "queued"
    breaks_for(monkeypatch, "bad", RuntimeError("boom"))

    def no_end(*args: Any) -> None:
        raise RuntimeError("cannot end either")

    monkeypatch.setattr(w.sup.book, "end", no_end)
    for _ in range(rules.STRIKES + 1):
        w.advance(0)
    assert "bad" not in w.sup.running
    monkeypatch.undo()
    w.tick_until(lambda: w.status("next")["status"] == "in_progress")


def test_keyboard_interrupt_and_system_exit_are_not_swallowed(world, monkeypatch):
    w = world()
    w.submit(task_id="t1")
    for error in (KeyboardInterrupt(), SystemExit(3)):
        breaks_for(monkeypatch, "t1", error)
        with pytest.raises(type(error)):
            w.advance(0)


def test_a_bug_at_start_up_fails_that_task_and_the_daemon_starts(world):
    w = world()
    w.submit(task_id="t1")
    w.sup.close()

    def broken(*args: Any) -> None:
        raise TypeError("unexpected record")

    w.procs.find = broken
    w.sup = w.new_supervisor()  # before: the TypeError ended start-up, and every start after it
    status = w.status("t1")
    assert status["status"] == "failed" and status["error"].startswith("internal error: TypeError")
    assert "t1" not in w.sup.running


def test_a_bug_with_one_spool_file_rejects_that_file_and_takes_the_others(world, monkeypatch):
    w = world()
    real = intake.check

    def check(raw: bytes, known: Any, base: Any = None, **more: Any) -> Any:
        if b"poison" in raw:
            raise ValueError("a parser bug")
        return real(raw, known, base, **more)

    monkeypatch.setattr(intake, "check", check)
    (w.settings.spool_dir / "a-poison.md").write_text("poison\n")
    (w.settings.spool_dir / "b-fine.md").write_text("fine\n")
    for _ in range(rules.STRIKES + 1):
        w.sup.schedule.rescan_at = 0.0
        w.advance(0)
    assert w.status("b-fine")["status"] == "in_progress"
    rejected = w.settings.spool_dir / "rejected"
    assert (rejected / "a-poison.md").exists()
    assert "internal error: ValueError: a parser bug" in (rejected / "a-poison.md.error").read_text()


# -- runs that end at once cannot loop ---------------------------------------------------------


def lose_the_session(w: Any) -> None:
    """A run whose `resume` finds no recorded session: the task is owed a fresh start."""
    w.submit()
    w.events("t1", THREAD, {"type": "turn.started"})
    stderr(w, "t1", LOST)
    w.procs.current.end(1)
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)


def test_a_lost_session_starts_afresh_once_then_fails(world):
    w = world()
    lose_the_session(w)
    assert len(w.procs.started) == 1  # not at once: after a backoff
    w.advance(10)
    assert len(w.procs.started) == 2 and "resume" not in w.procs.current.argv  # afresh
    w.events("t1", THREAD, {"type": "turn.started"})
    stderr(w, "t1", LOST)
    w.procs.current.end(1)
    w.tick_until(lambda: w.status()["status"] == "failed")
    for _ in range(3):
        w.advance(60)
    assert len(w.procs.started) == 2
    assert "no rollout found" in w.status()["error"]


def test_the_reason_comes_from_this_runs_stderr_only(world):
    w = world()
    lose_the_session(w)
    w.advance(10)
    w.procs.current.end(1)  # the fresh run says nothing on stderr
    w.tick_until(lambda: w.status()["status"] == "failed")
    assert w.status()["error"] == "Codex exited with code 1"  # not the old run's "no rollout found"
    assert len(w.procs.started) == 2


def test_every_spawn_records_where_its_stderr_begins(world):
    w = world()
    w.submit()
    cursor = w.status()["daemon"]
    assert cursor["stderr_start"] == 0
    stderr(w, "t1", "one line\n")
    w.events("t1", THREAD, {"type": "turn.started"})
    w.advance(0)
    w.advance(900)  # a stall: resumed after its backoff
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    w.advance(10)
    assert w.status()["daemon"]["stderr_start"] == len("one line\n")


# -- requests are removed only once their effect is recorded -------------------------------------


def test_a_stop_request_stays_until_the_cancellation_is_recorded(world):
    w = world()
    w.submit()
    w.procs.kill_tree = lambda *a: []  # a tree that takes its time to end
    request = w.settings.tasks_dir / ".requests" / "t1.stop"
    request.write_text("now")
    for _ in range(3):
        w.sup.schedule.rescan_at = 0.0
        w.advance(0)
    assert request.exists() and w.status()["status"] == "in_progress"
    assert "Stopping" in w.log() and w.log().count("Stopping") == 1  # handled once, not every pass
    w.procs.current.end(-9)
    w.tick_until(lambda: w.status()["status"] == "cancelled")
    assert not request.exists()  # at once, not at the next rescan: a `retry` may come next


def test_a_new_daemon_finishes_a_stop_the_last_one_began(world):
    w = world()
    w.submit()
    (w.settings.tasks_dir / ".requests" / "t1.stop").write_text("now")
    w.sup.close()  # (a daemon killed before it handled or recorded the stop; its Codex ended meanwhile)
    w.sup = w.new_supervisor()
    w.tick_until(lambda: w.status()["status"] == "cancelled")
    assert not (w.settings.tasks_dir / ".requests" / "t1.stop").exists()


def test_a_restart_request_is_handled_once(world):
    w = world()
    w.submit()
    w.events("t1", THREAD)
    (w.settings.tasks_dir / ".requests" / "t1.restart").write_text("now")
    w.sup.schedule.rescan_at = 0.0
    w.tick_until(lambda: len(w.procs.started) == 2)
    for _ in range(3):
        w.sup.schedule.rescan_at = 0.0
        w.advance(0)
    assert len(w.procs.started) == 2 and w.status()["restarts"] == 1
    assert not (w.settings.tasks_dir / ".requests" / "t1.restart").exists()


def test_a_restart_request_older_than_the_current_run_is_not_carried_out_again(world):
    w = world()
    w.procs.create_time = lambda pid: time.time()
    w.submit()
    w.events("t1", THREAD)
    w.advance(0)
    request = w.settings.tasks_dir / ".requests" / "t1.restart"
    request.write_text("now")
    os.utime(request, (time.time() - 60, time.time() - 60))  # written before this run began
    w.sup.close()  # a daemon that restarted it and died before removing the request
    # (the run ended meanwhile, on its own: a new daemon finds no fake child)
    w.events("t1", {"type": "turn.started"}, {"type": "turn.completed", "usage": {}})
    w.sup = w.new_supervisor()
    w.tick_until(lambda: w.status()["status"] == "completed")
    assert len(w.procs.started) == 1 and not request.exists()


def queue_next(w: World) -> None:
    """A second task, queued behind the first while max_parallel is 1."""
    intake.submit(
        b"Next.\n",
        "n.md",
        tasks=w.sup.tasks,
        spool_dir=w.settings.spool_dir,
        known_types=tasktypes.BUILTIN,
        overrides={"task_id": "next", "cwd": str(w.tmp)},
    )
    w.sup.schedule.rescan_at = 0.0
    w.advance(0)


# -- a task's folder ------------------------------------------------------------------------------


def test_a_task_whose_folder_vanished_leaves_the_books_and_frees_its_slot(world):
    w = world()
    w.settings.max_parallel = 1
    w.submit(task_id="gone")
    queue_next(w)
    with structlog.testing.capture_logs() as logged:
        shutil.rmtree(w.settings.tasks_dir / "gone")
        for _ in range(3):
            w.advance(taskwatch.FOLDER_CHECK)
    assert "gone" not in w.sup.running
    w.tick_until(lambda: w.procs.kills == 1)
    assert [e["event"] for e in logged].count("task.folder_gone") == 1
    w.tick_until(lambda: w.status("next")["status"] == "in_progress")


def test_a_task_whose_folder_was_replaced_leaves_the_books(world):
    w = world()
    w.submit(task_id="moved")
    folder = w.settings.tasks_dir / "moved"
    folder.rename(w.tmp / "elsewhere")
    folder.mkdir()
    w.advance(taskwatch.FOLDER_CHECK)
    assert "moved" not in w.sup.running
    w.tick_until(lambda: w.procs.kills == 1)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: None, "no longer exists"),
        (lambda p: p.write_text("a file"), "is not a folder"),
    ],
)
def test_a_bad_cwd_is_named_with_its_fix_not_taken_for_a_missing_codex(tmp_path, make, expected):
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / store.INSTRUCTIONS).write_text("Do it.\n")
    cwd = tmp_path / "work"
    make(cwd)
    launch = process.Launch("t1", task_dir, ["true"], cwd, 0)
    with pytest.raises(process.LaunchError) as raised:
        process.spawn(launch)
    assert str(cwd) in str(raised.value) and expected in str(raised.value)
    assert "install Codex" not in str(raised.value)


def test_an_unenterable_cwd_is_named_with_its_fix(tmp_path, monkeypatch):
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / store.INSTRUCTIONS).write_text("Do it.\n")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: str(p) != str(tmp_path) and real(p, mode))
    with pytest.raises(process.LaunchError) as raised:
        process.spawn(process.Launch("t1", task_dir, ["true"], tmp_path, 0))
    assert f"cannot enter {tmp_path}" in str(raised.value) and "chmod" in str(raised.value)


# -- side threads --------------------------------------------------------------------------------


class BrokenChild:
    pid = 900_200_001

    def wait(self) -> int:
        raise OSError("wait failed")

    def poll(self) -> int | None:
        return None


def test_a_waiter_that_fails_still_reports_the_exit(tmp_path):
    posted: list[Exited] = []
    done = threading.Event()
    sink = runs.Runs.__new__(runs.Runs)
    sink.post = lambda m: (posted.append(m), done.set())  # type: ignore[method-assign,assignment]
    thread = threading.Thread(target=sink._wait_child, args=("t1", 7, BrokenChild()))
    thread.start()
    assert done.wait(5) and posted == [Exited("t1", 7, None)]


def test_a_killer_that_fails_is_tried_again(world):
    w = world()
    w.submit()
    tries: list[int] = []
    real = w.procs.kill_tree

    def flaky(*args: Any) -> list[Any]:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("process table hiccup")
        return real(*args)

    w.procs.kill_tree = flaky
    w.procs.kill_retry = 0.01
    (w.settings.tasks_dir / ".requests" / "t1.stop").write_text("now")
    w.sup.schedule.rescan_at = 0.0
    w.tick_until(lambda: w.status()["status"] == "cancelled")
    assert len(tries) >= 2


def test_a_folder_watcher_that_fails_is_logged_and_started_again(tmp_path, monkeypatch):
    made: list[int] = []
    real = kernelwatch.KernelWatch

    def kernel_watch() -> kernelwatch.KernelWatch:
        made.append(1)
        if len(made) == 1:
            raise OSError(24, "Too many open files")  # inotify_init1 refused: EMFILE
        return real()

    monkeypatch.setattr(kernelwatch, "KernelWatch", kernel_watch)
    changed = threading.Event()
    with structlog.testing.capture_logs() as logged:
        watcher = FolderWatcher([tmp_path], changed.set, restart_delay=0.01)
        watcher.start()
        deadline = time.monotonic() + 5
        while len(made) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        changed.clear()
        time.sleep(0.1)  # the second watch is in place
        (tmp_path / "new.md").write_text("x")
        assert changed.wait(5)  # the watch works again
        watcher.stop()
    assert len(made) == 2
    assert any(e["event"] == "watcher.failed" and "Too many open files" in e["error"] for e in logged)


def test_the_watchfiles_fallback_that_fails_is_logged_and_started_again(tmp_path, monkeypatch):
    import watchfiles

    calls: list[int] = []
    changed = threading.Event()

    def watch(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("inotify gone")
        yield {("added", "x")}
        kwargs["stop_event"].wait(5)

    monkeypatch.setattr(watchfiles, "watch", watch)
    with structlog.testing.capture_logs() as logged:
        watcher = PolledFolderWatcher([tmp_path], lambda: calls.append(0) or changed.set(), 0.01)
        watcher.start()
        assert changed.wait(5)
        deadline = threading.Event()
        while calls.count(1) < 2 and not deadline.wait(0.01):
            pass
        watcher.stop()
    assert calls.count(1) >= 2
    assert any(e["event"] == "watcher.failed" for e in logged)


def test_a_health_schedule_that_died_is_started_again(world):
    w = world()
    rules = w.sup._health
    assert rules is not None
    rules.stop()  # (as if APScheduler's thread died)
    assert not rules.alive
    with structlog.testing.capture_logs() as logged:
        w.sup.schedule.rescan_at = 0.0
        w.advance(0)
    assert rules.alive
    assert any(e["event"] == "health.restarted" for e in logged)


def test_a_folder_watcher_thread_that_died_is_started_again(world):
    w = world()
    watcher = w.sup._watcher
    assert watcher is not None
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    watcher._thread = dead  # (as if it died of something its own guard did not catch)
    with structlog.testing.capture_logs() as logged:
        w.sup.schedule.rescan_at = 0.0
        w.advance(0)
    assert watcher.alive and any(e["event"] == "watcher.restarted" for e in logged)


def test_a_full_disk_while_owing_a_restart_redoes_the_whole_end_of_the_run(world, monkeypatch):
    w = world()
    w.submit()
    w.events("t1", THREAD)
    w.advance(0)
    real = store.append_line
    failed: list[str] = []

    def append_line(path: Path, line: str) -> int:
        if "Restarting in" in line and not failed:
            failed.append(line)
            raise StorageError(f"cannot append to {path}: No space left on device")
        return real(path, line)

    monkeypatch.setattr(store, "append_line", append_line)
    w.advance(900)
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    w.advance(10)
    assert failed and w.log().count("Restarting in 10s") == 1
    assert len(w.procs.started) == 2 and w.procs.current.argv[-3:] == ["resume", "th-1", "-"]
    assert w.status()["status"] == "in_progress" and w.status()["restarts"] == 1


def test_a_delivery_lane_whose_bookkeeping_fails_is_freed_and_tried_again(tmp_path, monkeypatch):
    from tests.unit.notify.test_dispatch import Endpoints, Harness, delivery

    h = Harness(tmp_path, Endpoints())
    broken: list[int] = []
    real = h.box.delivered

    def delivered(d: Any) -> None:
        if not broken:
            broken.append(1)
            raise ValueError("outbox bug")
        real(d)

    monkeypatch.setattr(h.box, "delivered", delivered)
    h.put(delivery("a", "json://x/up"))
    with structlog.testing.capture_logs() as logged:
        h.pump()
    assert any(e["event"] == "notice.settle_failed" for e in logged)
    assert not any(lane.busy for lane in h.courier._lanes.values())  # before: busy for ever
    h.pump()
    assert h.fake.tried == ["a", "a"] and h.box.pending() == []


def test_a_request_whose_name_is_no_task_id_is_not_acted_on(world, monkeypatch):
    w = world()
    w.submit()
    acted: list[str] = []
    monkeypatch.setattr(w.sup.requests, "cancel", lambda task_id, now: acted.append(task_id))
    for name in ("a b.stop", "ü.stop", "x" * 129 + ".stop", "t1.stop"):
        (w.settings.tasks_dir / ".requests" / name).write_text("now")
    w.sup.schedule.rescan_at = 0.0
    w.advance(0)
    assert acted == ["t1"]
