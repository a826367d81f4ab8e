"""Following driven by the kernel: the loop reads the tasks that wrote, and every task now and
then in case an event was lost."""

from __future__ import annotations

import queue
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codexd.clock import SystemClock
from codexd.daemon import kernelwatch, rollout, taskwatch
from codexd.daemon.polledwatch import PolledTaskWatcher
from codexd.daemon.supervisor import Supervisor
from codexd.daemon.taskwatch import TaskWatcher
from codexd.tasks.store import status_from
from tests.unit.daemon.test_supervisor import THREAD, FakeProcesses, World

pytestmark = pytest.mark.timeout(30)
Posts = queue.SimpleQueue[frozenset[str]]
MESSAGE = {"type": "item.completed", "item": {"id": "m", "type": "agent_message", "text": "tick"}}


def posted_until(posts: queue.SimpleQueue[frozenset[str]], wanted: str, timeout: float = 5) -> set[str]:
    """Every task named in posts until `wanted` is among them."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        seen |= posts.get(timeout=max(0.01, deadline - time.monotonic()))
    return seen


@pytest.fixture
def watched(
    tmp_path,
) -> Iterator[tuple[TaskWatcher, queue.SimpleQueue[frozenset[str]], queue.SimpleQueue[Any]]]:
    for name in ("t1", "t2", "t3"):
        (tmp_path / name).mkdir()
    posts: queue.SimpleQueue[frozenset[str]] = queue.SimpleQueue()  # the tasks that wrote
    touches: queue.SimpleQueue[tuple[frozenset[str], frozenset[str]]] = queue.SimpleQueue()  # each post

    def post(wrote: frozenset[str], touched: frozenset[str]) -> None:
        if wrote:
            posts.put(wrote)
        touches.put((wrote, touched))

    watcher = TaskWatcher(tmp_path, post)
    watcher.watch(["t1", "t2"])
    watcher.start()
    yield watcher, posts, touches
    watcher.stop()


def test_a_task_that_writes_is_named_and_our_own_files_wake_nobody(watched, tmp_path):
    watcher, posts, _ = watched
    assert posted_until(posts, "t2") == {"t1", "t2"}  # a new watch: everything once
    deadline = time.monotonic() + 5
    while watcher.covers != {"t1", "t2"}:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.1)  # the watch is in place
    (tmp_path / "t1" / "progress.log").write_text("ours\n")
    (tmp_path / "t1" / "status.json").write_text("{}\n")
    (tmp_path / "t2" / "events.jsonl").write_text("{}\n")
    assert posted_until(posts, "t2") == {"t2"}


def test_the_watch_follows_the_running_tasks(watched, tmp_path):
    watcher, posts, _ = watched
    posted_until(posts, "t2")
    watcher.watch(["t2", "t3"])
    assert posted_until(posts, "t3") >= {"t3"}  # the new set, reported once
    deadline = time.monotonic() + 5
    while watcher.covers != {"t2", "t3"}:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.1)
    (tmp_path / "t1" / "events.jsonl").write_text("{}\n")  # no longer running: not watched
    (tmp_path / "t3" / "reports.jsonl").write_text("{}\n")
    assert "t1" not in posted_until(posts, "t3")


class WatchedWorld(World):
    """The supervisor as the daemon runs it: with the task watcher, on the real clock."""

    def new_supervisor(self) -> Supervisor:
        self.clock = SystemClock()  # type: ignore[assignment]
        sup = Supervisor(self.settings, clock=self.clock, processes=self.procs)
        sup.start()
        return sup


def test_the_loop_reads_only_the_tasks_that_wrote(tmp_path, monkeypatch):
    monkeypatch.setattr(taskwatch, "READ_ALL", 3600.0)  # no safety read during the test
    w = WatchedWorld(tmp_path, FakeProcesses())
    try:
        w.submit(task_id="t1")
        w.submit(task_id="t2")
        reads: Counter[str] = Counter()
        real = w.sup.runs.follow

        def counted(running: Any, now: Any) -> bool:
            reads[running.task_id] += 1
            return real(running, now)

        monkeypatch.setattr(w.sup.runs, "follow", counted)
        w.tick_until(lambda: w.sup._taskwatch is not None and w.sup._taskwatch.covers == {"t1", "t2"})
        time.sleep(0.2)  # the watch is in place
        for _ in range(5):
            w.sup.step()
        reads.clear()
        w.events("t1", THREAD, MESSAGE)
        w.tick_until(lambda: "tick" in w.log("t1"))
        for _ in range(5):
            w.sup.step()
        assert reads["t1"] >= 1 and reads["t2"] == 0
    finally:
        w.sup.close()


def test_every_task_is_read_on_the_slow_timer_and_while_no_watch_covers_it(tmp_path):
    w = WatchedWorld(tmp_path, FakeProcesses())
    try:
        w.submit(task_id="t1")
        assert w.sup._taskwatch is not None
        w.sup._taskwatch.stop()  # a watcher that is down: every round reads every task
        w.events("t1", THREAD, MESSAGE)
        w.tick_until(lambda: "tick" in w.log("t1"), timeout=2)
        assert w.sup._taskwatch.covers == frozenset()  # so every round reads every task
        w.sup.reads._all_at = 0.0  # the slow timer is due: every task, watched or not
        assert w.sup.reads.due(w.sup.clock.monotonic(), ["t1"], frozenset({"t1"})) is None
    finally:
        w.sup.close()


def test_a_session_without_a_rollout_file_is_looked_for_again_later(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(rollout, "_found", {})
    monkeypatch.setattr(rollout, "_missed", {})
    monkeypatch.setattr(rollout, "_listings", {})
    assert rollout.find("s1") is None
    folder = tmp_path / "home" / "sessions" / time.strftime("%Y/%m/%d")
    folder.mkdir(parents=True)
    (folder / "rollout-2026-11-26T18-00-00-s1.jsonl").write_text("{}\n")
    assert rollout.find("s1") is None  # not looked for again at once: a search costs 80 µs
    rollout._missed["s1"] = (0.0, rollout._missed["s1"][1])  # its wait is over
    assert rollout.find("s1") is None  # the day's listing is shared for a second
    rollout._missed["s1"] = (0.0, rollout._missed["s1"][1])
    monkeypatch.setattr(rollout, "_listings", {})  # a second later
    assert rollout.find("s1") == Path(folder / "rollout-2026-11-26T18-00-00-s1.jsonl")


def test_a_rollout_missed_again_and_again_is_looked_for_less_and_less(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(rollout, "_missed", {})
    waits = []
    for _ in range(8):
        assert rollout.find("s2") is None
        waits.append(rollout._missed["s2"][1])
        rollout._missed["s2"] = (0.0, waits[-1])
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_with_many_busy_tasks_each_is_read_less_often_and_nothing_is_lost():
    reads = taskwatch.Reads()
    running = [f"t{i}" for i in range(3 * taskwatch.READS)]  # each task read at most every 3 s
    assert reads.due(0.0, running, frozenset(running)) is None  # the first round reads all
    for task_id in running:
        reads.done(task_id, 0.0, more=task_id == "t7")
    reads.grown |= {"t1", "t2"}
    assert reads.due(1.0, running, frozenset(running)) == {"t7"}  # more to read: at once
    assert reads.due(2.0, running, frozenset(running[1:])) == {"t0"}  # not covered by a watch
    reads.done("t0", 2.0, more=False)
    assert reads.due(3.0, running, frozenset(running)) == {"t1", "t2"}  # their writes, batched
    assert reads.due(4.0, running, frozenset(running)) == set()
    assert reads.due(5.0, running, frozenset(running)) is None  # the slow timer: all again
    assert reads.due(5.1, running, None) is None  # no watch at all: all, every round


def test_a_task_folder_removed_moved_or_chmodded_is_named_as_touched(watched, tmp_path):
    watcher, posts, touches = watched
    watcher.watch(["t1", "t2", "t3"])
    posted_until(posts, "t3")
    (tmp_path / "t1").chmod(0o500)  # made unreadable to the daemon's writes, by hand
    (tmp_path / "t2").rename(tmp_path / "t2-away")
    shutil.rmtree(tmp_path / "t3")
    touched: set[str] = set()
    deadline = time.monotonic() + 5
    while touched != {"t1", "t2", "t3"}:
        _, folders = touches.get(timeout=max(0.01, deadline - time.monotonic()))
        touched |= folders
    (tmp_path / "t1").chmod(0o700)


def test_writes_between_reads_wake_the_loop_once_until_it_reads_again(watched, tmp_path):
    watcher, posts, _ = watched
    posted_until(posts, "t2")
    time.sleep(0.3)
    while not posts.empty():
        posts.get()
    events = tmp_path / "t1" / "events.jsonl"
    for n in range(5):  # five events, no read in between: one wake-up
        with events.open("a") as f:
            f.write(f'{{"n": {n}}}\n')
        time.sleep(0.15)
    assert posted_until(posts, "t1") == {"t1"}
    time.sleep(0.3)
    assert posts.empty()  # its watch rests until the loop reads it
    watcher.arm("t1")  # the loop reads it: armed first
    with events.open("a") as f:
        f.write('{"n": 5}\n')
    assert posted_until(posts, "t1") == {"t1"}
    (tmp_path / "t2" / "reports.jsonl").write_text("{}\n")  # a file the task made after its start
    assert posted_until(posts, "t2") == {"t2"}


def test_a_task_the_watch_saw_removed_leaves_the_books_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(taskwatch, "FOLDER_CHECK", 3600.0)  # only the watch can tell
    monkeypatch.setattr(taskwatch, "READ_ALL_KERNEL", 3600.0)
    w = WatchedWorld(tmp_path, FakeProcesses())
    try:
        w.submit(task_id="t1")
        w.tick_until(lambda: w.sup._taskwatch is not None and w.sup._taskwatch.covers == {"t1"})
        w.sup.reads.read_all = 3600.0
        shutil.rmtree(w.settings.tasks_dir / "t1")
        w.tick_until(lambda: "t1" not in w.sup.running, timeout=3)
    finally:
        w.sup.close()


def test_deadlines_are_checked_when_due_not_every_task_every_round(tmp_path, monkeypatch):
    w = World(tmp_path, FakeProcesses())
    w.settings.max_parallel = 20
    try:
        for n in range(20):
            w.submit(task_id=f"t{n}")
        checks: Counter[str] = Counter()
        real = w.sup.runs.check_deadlines

        def counted(running: Any, now: Any, unread: bool = False) -> None:
            checks[running.task_id] += 1
            real(running, now, unread)

        monkeypatch.setattr(w.sup.runs, "check_deadlines", counted)
        for _ in range(100):  # 10 s of rounds, ten a second
            w.advance(0.1)
        # Silent since their start: each tree is read every 5 s (its stall timeout is 900 s), and
        # its deadlines looked at twice per reading; not 100 times each.
        assert 20 <= sum(checks.values()) <= 20 * 6
        w.advance(900 - 10)  # the stall deadline of every one of them
        assert {w.status(f"t{n}")["status"] for n in range(20)} == {"stalled"}
    finally:
        w.sup.close()


def test_without_inotify_watchfiles_serves_and_every_folder_is_checked_by_the_loop(tmp_path, monkeypatch):
    monkeypatch.setattr(kernelwatch, "inotify_simple", None)  # as on macOS
    for name in ("t1", "t2"):
        (tmp_path / name).mkdir()
    posts: Posts = queue.SimpleQueue()
    watcher = taskwatch.task_watcher(tmp_path, lambda wrote, _: posts.put(wrote))
    assert isinstance(watcher, PolledTaskWatcher) and not watcher.sees_folders
    watcher.watch(["t1", "t2"])
    watcher.start()
    try:
        assert posted_until(posts, "t2") == {"t1", "t2"}  # a new watch: everything once
        deadline = time.monotonic() + 5
        while watcher.covers != {"t1", "t2"}:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)
        (tmp_path / "t1" / "progress.log").write_text("ours\n")
        (tmp_path / "t2" / "events.jsonl").write_text("{}\n")
        assert posted_until(posts, "t2") == {"t2"}
    finally:
        watcher.stop()
    reads = taskwatch.Reads(watcher.read_all)
    assert reads.folders(0.0, ["t1", "t2"], None, reading_all=False) is None  # all, each second
    assert reads.folders(0.5, ["t1", "t2"], None, reading_all=False) == set()


def test_folders_are_checked_when_the_watch_saw_them_touched_or_no_watch_covers_them():
    reads = taskwatch.Reads()
    running = ["t1", "t2", "t3"]
    assert reads.folders(0.0, running, {"t1", "t2", "t3"}, reading_all=True) is None  # with every read
    assert reads.folders(0.1, running, {"t1", "t2"}, reading_all=False) == {"t3"}  # not covered
    reads.touched.add("t1")
    assert reads.folders(0.2, running, {"t1", "t2"}, reading_all=False) == {"t1"}
    assert reads.folders(0.3, running, {"t1", "t2"}, reading_all=False) == set()  # said once
    assert reads.folders(1.2, running, {"t1", "t2"}, reading_all=False) == {"t3"}  # a second on


def test_a_run_that_ended_has_its_rollout_looked_for_once_more(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(rollout, "_found", {})
    monkeypatch.setattr(rollout, "_missed", {})
    monkeypatch.setattr(rollout, "_listings", {})
    folder = tmp_path / "home" / "sessions" / time.strftime("%Y/%m/%d")
    folder.mkdir(parents=True)
    assert rollout.find("s3") is None  # not there yet: looked for again in a second
    (folder / "rollout-2026-11-26T18-00-00-s3.jsonl").write_text("{}\n")
    assert rollout.find("s3") is None
    assert rollout.find("s3", again=True) == folder / "rollout-2026-11-26T18-00-00-s3.jsonl"


def test_a_task_whose_rollout_is_not_found_yet_is_read_once_a_due_search_finds_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(rollout, "_found", {})
    monkeypatch.setattr(rollout, "_listings", {})
    monkeypatch.setattr(rollout, "_missed", {"s4": (time.monotonic() + 2.0, 2.0)})  # next look in 2 s
    status = status_from(
        b'{"task_id": "t1", "type": "generic", "status": "in_progress", "created_at": "2026-11-26T00:00:00Z",'
        b' "updated_at": "2026-11-26T00:00:00Z", "log_file": "progress.log", "thread_id": "s4"}'
    )
    reads = taskwatch.Reads(read_all=3600.0)
    assert reads.due(100.0, ["t1"], {"t1"}) is None  # (the first round reads every task)
    reads.look_for_rollout("t1", status, 100.0)
    assert 101.9 < reads.next_later <= 102.0  # the loop wakes for it
    assert reads.due(101.0, ["t1"], {"t1"}) == set()  # silent, and its search not due yet
    rollout._missed["s4"] = (0.0, 2.0)  # (its wait is over on the real clock too)
    assert reads.due(102.0, ["t1"], {"t1"}) == set()  # searched, missed again: no read for that
    assert reads.next_later > 102.0  # looked for later still
    folder = tmp_path / "home" / "sessions" / time.strftime("%Y/%m/%d")
    folder.mkdir(parents=True)
    (folder / "rollout-2026-11-26T18-00-00-s4.jsonl").write_text("{}\n")
    rollout._missed["s4"] = (0.0, 2.0)
    monkeypatch.setattr(rollout, "_listings", {})
    assert reads.due(reads.next_later, ["t1"], {"t1"}) == {"t1"}  # found: read at once
    assert reads.next_later == float("inf")


def test_a_read_that_failed_is_tried_again_at_the_next_round_with_no_new_write(tmp_path, monkeypatch):
    w = WatchedWorld(tmp_path, FakeProcesses())
    try:
        w.submit(task_id="t1")
        w.tick_until(lambda: w.sup._taskwatch is not None and w.sup._taskwatch.covers == {"t1"})
        mono = w.sup.clock.monotonic()
        assert w.sup.reads.due(mono, ["t1"], {"t1"}) == set()  # nothing written: nothing to read

        def failing(running: Any, now: Any, ended: bool = False) -> bool:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(w.sup.runs, "follow", failing)
        with pytest.raises(OSError):
            w.sup.follow(w.sup.running["t1"], w.sup.clock.now())
        # The watch will not say it again (nothing new is written): the loop reads it next round,
        # and a bug met there again is counted by the boundary, not forgotten for 30 s.
        assert w.sup.reads.due(w.sup.clock.monotonic(), ["t1"], {"t1"}) == {"t1"}
    finally:
        w.sup.close()
