"""Busy is not a stall: the pure rules with numbers, the sampler with a fake tree and a fake
clock (readings taken when due, files and the busiest process only when they matter), the
real tree read through psutil and cgroup files, and the supervisor with a busy fake tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from codexd.config.settings import HealthSettings
from codexd.daemon import busy, checkup, rules
from codexd.daemon.busy import FileId, Proc, Tracker, Where
from codexd.tasks import store
from codexd.tasks.records import Busy, Cursor, TaskStatus
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)
STALL, LIMIT, CPU = 900.0, 7200.0, 0.1


# -- the rules ----------------------------------------------------------------------------------


def test_without_busy_readings_a_stall_is_what_it_was():
    assert not rules.is_stalled(899.9, STALL)
    assert rules.is_stalled(900, STALL)
    assert rules.is_stalled(900, STALL, None, LIMIT)


def test_a_busy_tree_extends_the_deadline_up_to_the_busy_timeout():
    # 50 minutes silent, seen busy 10 s ago: not a stall
    assert not rules.is_stalled(3000, STALL, quiet=10, busy_timeout=LIMIT)
    # busy once, then quiet for a whole stall timeout: a stall as before
    assert rules.is_stalled(3000, STALL, quiet=900, busy_timeout=LIMIT)
    # busy all along, but without progress for busy_timeout: an endless loop is caught
    assert not rules.is_stalled(7199.9, STALL, quiet=1, busy_timeout=LIMIT)
    assert rules.is_stalled(7200, STALL, quiet=1, busy_timeout=LIMIT)
    assert rules.past_busy_timeout(7200, STALL, LIMIT)


def test_busy_means_more_than_the_share_of_a_core_or_a_growing_file():
    assert rules.is_busy(cpu_used=0.6, elapsed=5, busy_cpu=CPU)  # 12% of a core
    assert not rules.is_busy(cpu_used=0.05, elapsed=5, busy_cpu=CPU)  # Codex itself, waiting: 1%
    assert not rules.is_busy(cpu_used=0.5, elapsed=5, busy_cpu=CPU)  # exactly 10% is not more
    assert rules.is_busy(cpu_used=0, elapsed=5, busy_cpu=CPU, files_grew=True)
    assert not rules.is_busy(cpu_used=1, elapsed=0, busy_cpu=CPU)


def test_a_front_matter_stall_timeout_longer_than_busy_timeout_is_never_cut_short():
    policy = HealthSettings(stall_timeout=900, busy_timeout=3600)
    assert rules.timeouts_of(status(stall_timeout=10_000), policy) == (10_000, 10_000)
    assert rules.timeouts_of(status(), policy) == (900, 3600)


def test_the_stall_line_says_whether_the_tree_was_busy():
    assert (
        rules.stall_line(900, 900, STALL, LIMIT) == "Stalled: no progress for 15m00s (stall_timeout 15m00s)"
    )
    assert rules.stall_line(7200, 3, STALL, LIMIT) == (
        "Stalled: no progress for 2h00m, its processes busy all the while (busy_timeout 2h00m)"
    )
    assert rules.stall_line(3000, 900, STALL, LIMIT) == (
        "Stalled: no progress for 50m00s, idle for the last 15m00s (stall_timeout 15m00s)"
    )
    assert rules.late_by(7200.5, 3, STALL, LIMIT) == pytest.approx(0.5)
    assert rules.late_by(3000, 900.25, STALL, LIMIT) == pytest.approx(0.25)


def test_busy_timeout_must_outlast_the_stall_timeout_in_one_line():
    with pytest.raises(ValidationError) as caught:
        HealthSettings(stall_timeout=900, busy_timeout=600)
    message = caught.value.errors()[0]["msg"]
    assert "busy_timeout (600 s) must be longer than stall_timeout (900 s)" in message
    assert "\n" not in message
    # Not set: a long stall timeout alone stays valid (busy-ness then extends nothing).
    assert HealthSettings(stall_timeout=10_000).busy_timeout == 7200


def test_a_busy_timeout_set_by_environment_that_is_too_short_is_refused(tmp_path, monkeypatch):
    from codexd.config import settings
    from codexd.errors import ConfigError

    config = tmp_path / "config.toml"
    config.write_text("[health]\nstall_timeout = 900\n")
    monkeypatch.setenv("CODEXD_HEALTH__BUSY_TIMEOUT", "60")
    with pytest.raises(ConfigError) as caught:
        settings.load(config)
    assert str(caught.value).startswith("health: busy_timeout (60 s) must be longer than stall_timeout")


# -- the sampler, with a fake tree ------------------------------------------------------------


@dataclass
class FakeTree:
    """A process tree whose CPU, files and processes the test sets; it counts what is read."""

    used: float = 0.0  # CPU seconds so far
    sizes: dict[FileId, int] = field(default_factory=dict)
    per_proc: dict[Proc, float] = field(default_factory=dict)
    names: dict[Proc, str] = field(default_factory=dict)
    gone: bool = False
    reads: list[str] = field(default_factory=list)

    def cpu(self, where: Where) -> float | None:
        self.reads.append("cpu")
        return None if self.gone else self.used

    def files(self, where: Where) -> dict[FileId, int]:
        self.reads.append("files")
        return dict(self.sizes)

    def procs(self, where: Where) -> dict[Proc, float]:
        self.reads.append("procs")
        return dict(self.per_proc)

    def command(self, proc: Proc) -> str | None:
        return self.names.get(proc)


WHERE = Where(Path("/nowhere"), None)
LIMITS = (STALL, CPU)


class Sampler:
    """A tracker of one run, driven tick by tick on a fake monotonic clock."""

    def __init__(self, tree: FakeTree, stall_timeout: float = STALL):
        self.tree, self.tracker = tree, Tracker(tree)
        self.now, self.since, self.run = 0.0, 0.0, 1
        self.limits = (stall_timeout, CPU)

    def tick(self, seconds: float, cores: float = 0.0) -> busy.Seen | None:
        self.now += seconds
        self.tree.used += cores * seconds
        return self.tracker.look("t1", self.run, self.since, self.now, lambda: WHERE, self.limits)

    def ticks(self, seconds: float, step: float = 0.1, cores: float = 0.0) -> busy.Seen | None:
        seen = None
        for _ in range(round(seconds / step)):
            seen = self.tick(step, cores)
        return seen

    def quiet(self) -> float:
        seen = self.tick(0)
        return self.now - (seen.quiet_since if seen else self.since)


def test_a_tree_using_a_core_is_seen_busy_and_its_cpu_counted_from_the_last_progress():
    s = Sampler(FakeTree(used=50.0))  # 50 s of CPU before the last progress: not counted
    seen = s.ticks(1800, step=1, cores=1.0)
    assert seen is not None and seen.busy_at is not None
    assert s.now - seen.busy_at <= busy.SAMPLE_MAX
    assert s.quiet() <= busy.SAMPLE_MAX
    assert seen.cpu == pytest.approx(1800, abs=busy.SAMPLE_MAX + 1)


def test_a_blocked_tree_is_never_busy():
    s = Sampler(FakeTree())
    seen = s.ticks(1000, step=1, cores=0.005)  # half a percent of a core: a process waiting
    assert seen is not None and seen.busy_at is None
    assert s.quiet() == pytest.approx(1000)


def test_a_tree_is_read_at_most_every_few_seconds_not_every_tick():
    tree = FakeTree()
    s = Sampler(tree)
    s.ticks(100, step=0.1, cores=1.0)  # 1000 ticks
    assert tree.reads.count("cpu") <= 100 / busy.SAMPLE_MAX + 1
    short = Sampler(FakeTree(), stall_timeout=2)  # a test's 2 s stall timeout: four readings in it
    short.ticks(2, step=0.1, cores=1.0)
    assert 4 <= short.tree.reads.count("cpu") <= 6


def test_busy_work_that_stops_is_a_stall_one_stall_timeout_later():
    s = Sampler(FakeTree())
    s.ticks(600, step=1, cores=1.0)
    busy_until = s.now
    s.ticks(899, step=1)
    assert not rules.is_stalled(s.now - s.since, STALL, s.quiet(), LIMIT)
    s.ticks(busy.SAMPLE_MAX + 1, step=1)
    assert s.quiet() >= STALL and s.now - busy_until >= STALL


def test_the_deadline_gets_a_reading_of_its_own_so_a_late_one_cannot_hide_busy_work():
    """Readings drift later than their interval; the one before the deadline must not be the
    last word: the tree is read again when the deadline comes."""
    tree = FakeTree()
    s = Sampler(tree, stall_timeout=2)
    s.ticks(0.3, cores=1.0)
    s.ticks(1.9, cores=1.0)  # busy, with readings every 0.5 s
    seen = s.tick(0.1, cores=1.0)
    assert seen is not None and s.now - seen.quiet_since < 2


def test_files_growing_are_busy_and_are_read_only_late_in_the_window_when_the_cpu_is_idle():
    tree = FakeTree(sizes={(1, 7): 100})
    s = Sampler(tree)
    s.ticks(400, step=1)
    assert "files" not in tree.reads  # not yet half-way to the deadline
    for _ in range(200):  # a download: little CPU, a file that grows
        tree.sizes[(1, 7)] += 1000
        s.tick(1)
    seen = s.tick(0)
    assert seen is not None and seen.busy_at is not None and s.quiet() <= 2 * busy.SAMPLE_MAX
    assert "files" in tree.reads and "procs" not in tree.reads


def test_a_file_that_only_appears_or_shrinks_is_not_growth():
    assert not busy.files_grew({(1, 1): 10}, {(1, 1): 10, (1, 2): 500})
    assert not busy.files_grew({(1, 1): 10}, {(1, 1): 5})
    assert not busy.files_grew(None, {(1, 1): 50})
    assert busy.files_grew({(1, 1): 10, (1, 2): 3}, {(1, 1): 11})


def test_the_busiest_process_is_the_one_whose_cpu_grew_most():
    codex, cargo, rustc = (10, 1.0), (20, 2.0), (30, 3.0)
    before = {codex: 40.0, cargo: 1.0}
    after = {codex: 40.1, cargo: 1.2, rustc: 4.0}  # rustc is new: all it used counts
    assert busy.busiest(before, after) == rustc
    assert busy.busiest(None, {codex: 40.0, cargo: 1.0}) == codex
    assert busy.busiest(before, {codex: 40.0}) is None


def test_the_busiest_command_is_named_once_the_tree_is_busy_late_in_the_window():
    cargo = (20, 2.0)
    tree = FakeTree(per_proc={cargo: 0.0}, names={cargo: "cargo build"})
    s = Sampler(tree)
    for _ in range(900):
        tree.per_proc[cargo] += 1.0
        seen = s.tick(1, cores=1.0)
    assert seen is not None and seen.what == "cargo build"
    assert tree.reads.index("procs") > 400 / busy.SAMPLE_MAX  # not read before half-way


def test_progress_counts_cpu_afresh_and_a_new_run_starts_over():
    s = Sampler(FakeTree())
    s.ticks(100, step=1, cores=1.0)
    s.since = s.now  # an event arrived
    seen = s.ticks(20, step=1, cores=0.5)
    assert seen is not None and seen.cpu == pytest.approx(10, abs=busy.SAMPLE_MAX)
    s.run += 1
    seen = s.tick(1)
    assert seen is not None and seen.busy_at is None and seen.cpu == 0


def test_a_tree_that_cannot_be_read_leaves_silence_to_decide():
    s = Sampler(FakeTree(gone=True))
    assert s.ticks(1000, step=1, cores=1.0) is None
    assert s.quiet() == pytest.approx(1000)


def test_busy_news_is_recorded_each_time_and_said_once_past_the_stall_timeout():
    seen = busy.Seen(1, since=100.0, first=busy.Reading(100, 5.0), last=busy.Reading(1292, 197.0))
    seen.busy_at, seen.what = 1292.0, "cargo build --release"
    record = status()
    news = busy.noted(record, seen, (1292.0, 1_700_000_000.0), (STALL, LIMIT))
    assert news is not None
    lines, noted = news
    assert lines == [
        "busy: cargo build --release, 3m12s of CPU since the last event; not a stall "
        "(up to busy_timeout 2h00m)"
    ]
    assert noted.daemon.busy == Busy(at=1_700_000_000.0, cpu=192.0, what="cargo build --release")
    assert busy.noted(record, seen, (1293.0, 1_700_000_001.0), (STALL, LIMIT)) is None  # no news
    seen.busy_at = 1297.0
    again = busy.noted(record, seen, (1297.0, 1_700_000_005.0), (STALL, LIMIT))
    assert again is not None and again[0] == []  # recorded, not said again


def test_a_command_line_is_shortened_and_made_one_line():
    assert busy.short_command(["/usr/bin/cargo", "build", "--release"]) == "cargo build --release"
    long = busy.short_command(["python3", "-c", "import time\nwhile True:\n    " + "x" * 100])
    assert long is not None and len(long) == busy.COMMAND_CHARS and long.endswith("…")
    assert "\n" not in long
    assert busy.short_command([]) is None


# -- the real tree ----------------------------------------------------------------------------


def test_a_cgroup_cpu_stat_is_one_read(tmp_path):
    (tmp_path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert busy.cgroup_cpu(tmp_path) == 1.5
    assert busy.cgroup_cpu(tmp_path / "gone") is None


BUSY_CHILD = "import time\nt = time.time()\nwhile time.time() - t < 1.0: pass\ntime.sleep(30)"
WRITER = (
    "import sys, time\nf = open(sys.argv[1], 'w')\n"
    "for _ in range(300):\n    f.write('x' * 100); f.flush(); time.sleep(0.05)"
)


PARENT = (
    "import json, subprocess, sys\n"
    "children = [subprocess.Popen(argv) for argv in json.loads(sys.argv[1])]\n"
    "[child.wait() for child in children]"
)


def _tree(*children: list[str]) -> subprocess.Popen[bytes]:
    """A process whose children run the given commands."""
    return subprocess.Popen([sys.executable, "-c", PARENT, json.dumps(children)], start_new_session=True)


@pytest.fixture
def killed() -> Any:
    started: list[subprocess.Popen[bytes]] = []
    yield started.append
    import psutil

    for proc in started:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()


def _two_looks(
    shell: subprocess.Popen[bytes], task_dir: Path, look: str, ready: Callable[[], bool]
) -> tuple[Any, Any, Any]:
    """The real tree under `shell`, once `ready()`, looked at twice half a second apart:
    (tree, first, later)."""
    import psutil

    tree = busy.SystemTree()
    where = Where(task_dir, psutil.Process(shell.pid))
    wait_for(ready, 20, "the tree's commands to start")  # a loaded machine starts Python slowly
    first = getattr(tree, look)(where)
    time.sleep(0.5)
    return tree, first, getattr(tree, look)(where)


def test_the_real_tree_counts_the_cpu_of_every_descendant(tmp_path, killed):
    import psutil

    shell = _tree([sys.executable, "-c", BUSY_CHILD])
    killed(shell)
    started = psutil.Process(shell.pid)
    tree, first, later = _two_looks(shell, tmp_path, "cpu", lambda: bool(started.children()))
    assert first is not None and later is not None and later - first > 0.05
    top = busy.busiest(None, tree.procs(Where(tmp_path, psutil.Process(shell.pid))))
    assert top is not None and (tree.command(top) or "").startswith("python")


def test_the_real_tree_sees_the_files_its_commands_write_but_not_codex_own(tmp_path, killed):
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    out, own = tmp_path / "download.bin", task_dir / "events.jsonl"
    shell = _tree([sys.executable, "-c", WRITER, str(out)], [sys.executable, "-c", WRITER, str(own)])
    killed(shell)
    _, first, later = _two_looks(
        shell, task_dir, "files", lambda: out.exists() and out.stat().st_size > 0 and own.exists()
    )
    ident = (os.stat(out).st_dev, os.stat(out).st_ino)
    assert ident in first and busy.files_grew(first, later)
    assert (os.stat(own).st_dev, os.stat(own).st_ino) not in later  # Codex's own: its stdout


def test_a_tree_with_no_root_and_no_cgroup_is_not_read():
    assert busy.SystemTree().cpu(Where(Path("/nowhere"), None)) is None


# -- what the health check makes of the daemon's readings ---------------------------------------


def status(**changes: Any) -> TaskStatus:
    from tests.unit.cli.test_dashboard import review

    return review(task_id="t1", pid=os.getpid(), **changes)


class AliveTable:
    def find(self, pid: int | None, started: float | None, task_id: str) -> object:
        return object()

    def by_task(self, tasks_root: Path) -> dict[str, list[Any]]:
        return {}


def _checked(tmp_path: Path, record: TaskStatus, at: float) -> checkup.Checkup:
    from datetime import UTC, datetime

    tasks = store.TaskStore(tmp_path)
    (tmp_path / record.task_id).mkdir(exist_ok=True)
    tasks.write_status(record)
    policy = HealthSettings(stall_timeout=900, busy_timeout=7200)
    return checkup.run(tmp_path, policy, datetime.fromtimestamp(at, UTC), AliveTable())  # type: ignore[arg-type]


def test_the_health_check_takes_a_recently_busy_tree_for_no_stall(tmp_path):
    active = 1_700_000_000.0
    busy_record = Busy(at=active + 1795, cpu=192.0, what="cargo build")
    record = status(daemon=Cursor(active_at=active, busy=busy_record))
    found = _checked(tmp_path, record, active + 1800)
    assert found.ok, found.findings
    assert found.tasks[0].busy == {"at": active + 1795, "cpu": 192.0, "what": "cargo build"}


def test_the_health_check_flags_a_tree_quiet_since_or_busy_past_busy_timeout(tmp_path):
    active = 1_700_000_000.0
    quiet = status(daemon=Cursor(active_at=active, busy=Busy(at=active + 100, cpu=50.0)))
    found = _checked(tmp_path, quiet, active + 1000)
    assert [f.kind for f in found.findings] == [checkup.Problem.STALLED]
    assert "idle for the last 15m00s" in found.findings[0].text
    endless = status(daemon=Cursor(active_at=active, busy=Busy(at=active + 7199, cpu=7000.0)))
    found = _checked(tmp_path, endless, active + 7200)
    assert [f.kind for f in found.findings] == [checkup.Problem.STALLED]
    assert "busy all the while (busy_timeout 2h00m)" in found.findings[0].text
    stale = status(daemon=Cursor(active_at=active, busy=Busy(at=active - 5, cpu=1.0)))  # before progress
    assert _checked(tmp_path, stale, active + 10).tasks[0].busy is None


# -- the supervisor, with a fake clock, fake processes and a fake tree --------------------------


@pytest.fixture
def world(tmp_path: Path) -> Any:
    from tests.unit.daemon.test_supervisor import FakeProcesses, worlds

    yield from worlds(tmp_path, FakeProcesses())


CARGO = (4711, 1.0)


def _busy_world(world: Any, **health: Any) -> tuple[Any, FakeTree]:
    from tests.unit.daemon.test_supervisor import COMMAND, THREAD

    w = world(**health)
    tree = FakeTree(per_proc={CARGO: 0.0}, names={CARGO: "cargo build"})
    w.sup.runs.busy = Tracker(tree)
    w.submit()
    w.events("t1", THREAD, COMMAND)
    w.advance(0)
    return w, tree


def _work(w: Any, tree: FakeTree, seconds: float, cores: float = 1.0) -> None:
    for _ in range(round(seconds / 5)):
        tree.used += 5 * cores
        tree.per_proc[CARGO] += 5 * cores
        w.advance(5)


def test_a_silent_task_whose_tree_works_is_not_stalled_until_its_busy_timeout(world):
    w, tree = _busy_world(world, busy_timeout=3600)
    _work(w, tree, 3000)  # 50 minutes of a silent build: over three stall timeouts
    status = w.status()
    assert (status["status"], status["stalls"], status["restarts"]) == ("in_progress", 0, 0)
    told = [line for line in w.log().splitlines() if " busy: " in line]
    assert len(told) == 1, told  # said once, not once per look
    assert told[0].endswith(
        "busy: cargo build, 15m00s of CPU since the last event; not a stall (up to busy_timeout 1h00m)"
    )
    kept = status["daemon"]["busy"]
    assert kept["what"] == "cargo build" and kept["cpu"] == pytest.approx(3000, abs=10)
    _work(w, tree, 600)  # an endless loop: caught at busy_timeout
    status = w.status()
    assert (status["status"], status["stalls"]) == ("stalled", 1)
    assert "Stalled: no progress for 1h00m, its processes busy all the while (busy_timeout 1h00m)" in w.log()


def test_busy_work_that_stops_is_a_stall_one_stall_timeout_after_it_stopped(world):
    w, tree = _busy_world(world)
    _work(w, tree, 1200)
    _work(w, tree, 895, cores=0.005)  # blocked: no CPU to speak of
    assert w.status()["status"] == "in_progress"
    _work(w, tree, 10, cores=0.005)
    assert w.status()["status"] == "stalled"
    assert "Stalled: no progress for 35m" in w.log() and "idle for the last 15m0" in w.log()


def test_an_idle_silent_task_stalls_at_its_deadline_as_before(world):
    w, tree = _busy_world(world)
    _work(w, tree, 895, cores=0.005)
    assert w.status()["status"] == "in_progress"
    _work(w, tree, 5, cores=0.005)
    assert w.status()["status"] == "stalled"
    assert "Stalled: no progress for 15m00s (stall_timeout 15m00s)" in w.log()
    assert w.status()["daemon"]["busy"] is None
