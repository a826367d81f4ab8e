"""Whether a task that says nothing is working: its process tree's CPU time and the files it writes.

A long build or test run is silent in Codex's event stream (`item.started`, then nothing
until the command ends), so silence alone is no stall. The loop asks `Tracker.look` about
each watched task every tick; the tree is read at most every `interval()` seconds (5 s at
most), and once more when its stall deadline comes, and `Seen.busy_at` says when it was last
seen working. `rules.is_stalled` decides what that means.

What is read (the seam is `Tree`; unit tests give a fake):
- CPU: the run's cgroup's `cpu.stat` `usage_usec` when it has one (one read for the whole
  tree, processes that already ended included); else the sum, over the root and its
  descendants, of their own CPU time and their reaped children's (psutil).
- Files: the sizes of the regular files the tree's processes hold open for writing (psutil
  `open_files()`, each size read through /proc/<pid>/fd/<n>: the very file held open, whatever
  it is called by now). Only what the processes hold: nothing is walked, so a big repository
  costs nothing, another task writing in the same folder is not counted, and nothing is
  opened. Codex's own processes (those holding a file of the task's folder, events.jsonl
  being their stdout) are left out: their databases and logs grow while the work does not.
  A file written and closed at once (a compiler's output) is not seen, but its CPU is.
  Files are read only when the CPU said "idle" and the task is half-way to its deadline.
- The busiest process (for `health` and the dashboard): per-process CPU, read only when the
  tree is busy past half its stall timeout: the one whose CPU grew most since the last look.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import psutil

from codexd.clock import duration
from codexd.codex import containment
from codexd.daemon import rules
from codexd.daemon.processes import cgroup_of
from codexd.daemon.running import Running
from codexd.present.shown import shown_line
from codexd.tasks.records import Busy, TaskStatus

if TYPE_CHECKING:
    from codexd.config.settings import HealthSettings

SAMPLE_MAX = 5.0  # seconds between readings of a tree, at most (a quarter of a short stall timeout)
LATE = 0.5  # files and the busiest process are read once silent for this share of the stall timeout
FORGOTTEN = 600.0  # a run not read for this long has ended: what was seen of it goes
COMMAND_CHARS = 60  # a busiest command line is cut to this many characters
Proc = tuple[int, float]  # a process: its pid and create time (a pid alone may be reused)
FileId = tuple[int, int]  # a file: device and inode


@dataclass(frozen=True)
class Where:
    """A run's process tree: its cgroup when it has one, else its top process."""

    task_dir: Path
    root: psutil.Process | None
    cgroup: Path | None = None


@dataclass(frozen=True)
class Reading:
    at: float  # monotonic
    cpu: float  # CPU seconds the whole tree has used so far
    files: dict[FileId, int] | None = None  # sizes of the files it writes; None: not read
    procs: dict[Proc, float] | None = None  # each process's own CPU seconds; None: not read


class Tree(Protocol):
    def cpu(self, where: Where) -> float | None: ...

    def files(self, where: Where) -> dict[FileId, int]: ...

    def procs(self, where: Where) -> dict[Proc, float]: ...

    def command(self, proc: Proc) -> str | None: ...


@dataclass
class Seen:
    """What is known of one run's tree since its last progress (monotonic `since`)."""

    run: int
    since: float
    first: Reading  # the tree at (about) its last progress
    last: Reading
    busy_at: float | None = None  # the last reading that found it working
    what: str | None = None  # its busiest process's command line, shortened
    told: bool = False  # progress.log has said it is busy past its stall timeout
    kept: float | None = None  # the busy_at last written to its record

    @property
    def cpu(self) -> float:
        """CPU seconds the tree used since (about) its last progress."""
        return max(0.0, self.last.cpu - self.first.cpu)

    @property
    def quiet_since(self) -> float:
        return max(self.since, self.busy_at) if self.busy_at is not None else self.since


def _where(running: Running, task_dir: Path) -> Where:
    cgroup = cgroup_of(running.status, task_dir)
    # A cgroup says it all; the top process is looked up (a read of /proc) only without one.
    return Where(task_dir, running.root if cgroup is None else None, cgroup)


def interval(stall_timeout: float) -> float:
    return min(SAMPLE_MAX, stall_timeout / 4)


class Tracker:
    """Each watched run's `Seen`, kept on the loop's thread."""

    def __init__(self, tree: Tree | None = None):
        self.tree: Tree = tree or SystemTree()
        self._seen: dict[str, Seen] = {}

    def forget(self, task_id: str) -> None:
        self._seen.pop(task_id, None)

    def quiet(
        self,
        running: Running,
        task_dir: Callable[[], Path],
        at: tuple[float, float],
        limits: tuple[float, float],
        policy: HealthSettings,
    ) -> tuple[float, tuple[list[str], TaskStatus] | None]:
        """Seconds since the task's last progress or since its tree was last seen working, and
        what to record of that (see `noted`). `at`: now, monotonic and epoch seconds; `limits`:
        its stall and busy timeouts."""
        mono = at[0]
        if mono - running.active < interval(limits[0]):
            # Progress is recent: its tree need not be read (most of a busy daemon's tasks). What
            # was seen goes, so the next silent stretch is measured from a reading of its own.
            self.forget(running.task_id)
            return mono - running.active, None
        seen = self.look(
            running.task_id,
            running.run,
            running.active,
            mono,
            lambda: _where(running, task_dir()),
            (limits[0], policy.busy_cpu),
        )
        quiet = mono - (seen.quiet_since if seen is not None else running.active)
        return quiet, noted(running.status, seen, at, limits)

    def look(
        self,
        task_id: str,
        run: int,
        since: float,
        now: float,
        where: Callable[[], Where],
        limits: tuple[float, float],
    ) -> Seen | None:
        """The run's tree as last seen, read again when due (`where` is asked only then).
        `limits`: its stall timeout and `health.busy_cpu` (the share of a core that is work)."""
        stall_timeout, busy_cpu = limits
        seen = self._seen.get(task_id)
        if seen is not None and seen.run != run:
            seen = None
        if seen is not None and seen.since != since:  # it made progress: count from the newest reading
            seen = Seen(run, since, seen.last, seen.last)
        if seen is not None and not self._due(seen, now, stall_timeout):
            return seen
        late = seen is not None and now - seen.since >= stall_timeout * LATE
        reading = self._read(where(), now, seen, late, busy_cpu)
        if reading is None:
            self.forget(task_id)  # nothing to read (its process is gone): silence decides
            return None
        if seen is None:
            seen = Seen(run, since, reading, reading)
            self._seen = {key: old for key, old in self._seen.items() if now - old.last.at < FORGOTTEN}
        else:
            self._judge(seen, reading, busy_cpu)
        self._seen[task_id] = seen
        return seen

    def _due(self, seen: Seen, now: float, stall_timeout: float) -> bool:
        """Every interval, and once more at the deadline if the last reading is not recent."""
        every = interval(stall_timeout)
        since_last = now - seen.last.at
        deadline = now - seen.quiet_since >= stall_timeout
        return since_last >= every or (deadline and since_last >= every / 2)

    def _read(
        self, where: Where, now: float, seen: Seen | None, late: bool, busy_cpu: float
    ) -> Reading | None:
        cpu = self.tree.cpu(where)
        if cpu is None:
            return None
        reading = Reading(now, cpu)
        if seen is None or not late:
            return reading
        if cpu_busy(seen.last, reading, busy_cpu):
            return replace(reading, procs=self.tree.procs(where))
        return replace(reading, files=self.tree.files(where))

    def _judge(self, seen: Seen, reading: Reading, busy_cpu: float) -> None:
        grew = files_grew(seen.last.files, reading.files)
        if cpu_busy(seen.last, reading, busy_cpu) or grew:
            seen.busy_at = reading.at
        if reading.procs is not None:
            top = busiest(seen.last.procs, reading.procs)
            seen.what = (self.tree.command(top) if top else None) or seen.what
        seen.last = reading


def noted(
    status: TaskStatus, seen: Seen | None, now: tuple[float, float], limits: tuple[float, float]
) -> tuple[list[str], TaskStatus] | None:
    """What to record of a busy tree, when there is news: its record with `daemon.busy` (so
    that `codexd health` in another process judges it alike), and the one progress.log line
    said the first time it is busy past its stall timeout. `now`: (monotonic, epoch seconds);
    `limits`: its stall and busy timeouts."""
    if seen is None or seen.busy_at is None or seen.busy_at == seen.kept:
        return None
    mono, epoch = now
    seen.kept = seen.busy_at
    record = Busy(at=round(epoch - (mono - seen.busy_at), 3), cpu=round(seen.cpu, 2), what=seen.what)
    lines = []
    stall_timeout, busy_timeout = limits
    if not seen.told and seen.busy_at - seen.since >= stall_timeout:
        seen.told = True
        lines.append(
            f"busy: {shown_line(seen.what) if seen.what else 'its process tree'}, {duration(seen.cpu)} "
            f"of CPU since the last event; not a stall (up to busy_timeout {duration(busy_timeout)})"
        )
    return lines, status.with_(daemon=replace(status.daemon, busy=record))


def cpu_busy(before: Reading, after: Reading, busy_cpu: float) -> bool:
    return rules.is_busy(after.cpu - before.cpu, after.at - before.at, busy_cpu)


def files_grew(before: dict[FileId, int] | None, after: dict[FileId, int] | None) -> bool:
    """A file held open for writing in both readings got bigger (a new one is judged next time)."""
    if before is None or after is None:
        return False
    return any(size > before[file] for file, size in after.items() if file in before)


def busiest(before: dict[Proc, float] | None, after: dict[Proc, float]) -> Proc | None:
    """The process whose CPU grew most between two readings (a new one: all it used)."""
    grown = {proc: cpu - (before or {}).get(proc, 0.0) for proc, cpu in after.items()}
    top = max(grown, key=lambda proc: grown[proc], default=None)
    return top if top is not None and grown[top] > 0 else None


def short_command(argv: list[str]) -> str | None:
    """`/usr/bin/cargo build --release` -> `cargo build --release`, on one line, cut short."""
    if not argv:
        return None
    words = " ".join([os.path.basename(argv[0]), *argv[1:]]).split()
    text = " ".join(words)
    return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 1] + "…"


@dataclass
class SystemTree:
    """The real tree: the cgroup's files, else psutil over the root's descendants."""

    _procs: dict[Proc, psutil.Process] = field(default_factory=dict)  # the last procs() read

    def cpu(self, where: Where) -> float | None:
        if where.cgroup is not None:
            found = cgroup_cpu(where.cgroup)
            if found is not None:
                return found
        if where.root is None:
            return None
        total = 0.0
        for proc in self._members(where):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    def procs(self, where: Where) -> dict[Proc, float]:
        self._procs = {}
        found = {}
        for proc in self._members(where):
            with contextlib.suppress(psutil.Error):
                key = (proc.pid, proc.create_time())
                times = proc.cpu_times()
                found[key] = times.user + times.system
                self._procs[key] = proc
        return found

    def command(self, proc: Proc) -> str | None:
        found = self._procs.get(proc)
        if found is None:
            return None
        try:
            return short_command(found.cmdline()) or found.name()
        except psutil.Error:
            return None

    def files(self, where: Where) -> dict[FileId, int]:
        sizes: dict[FileId, int] = {}
        for proc in self._members(where):
            with contextlib.suppress(psutil.Error):
                sizes.update(_written(proc, where.task_dir))
        return sizes

    def _members(self, where: Where) -> Iterator[psutil.Process]:
        if where.cgroup is not None and where.cgroup.is_dir():
            for pid in containment.pids(where.cgroup):
                with contextlib.suppress(psutil.Error):
                    yield psutil.Process(pid)
            return
        if where.root is not None:
            with contextlib.suppress(psutil.Error):
                yield from [where.root, *where.root.children(recursive=True)]


def cgroup_cpu(folder: Path) -> float | None:
    """CPU seconds of everything that ran in the cgroup: one read of `cpu.stat`."""
    try:
        text = (folder / "cpu.stat").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec" and value.strip().isdigit():
            return int(value) / 1e6
    return None


def _written(proc: psutil.Process, task_dir: Path) -> dict[FileId, int]:
    """Regular files `proc` holds open for writing, by (device, inode): their sizes. None of
    Codex's own: a process holding a file of the task's folder is Codex (its stdout)."""
    sizes: dict[FileId, int] = {}
    for opened in proc.open_files():
        if Path(opened.path).is_relative_to(task_dir):
            return {}
        mode = getattr(opened, "mode", None)  # Linux only: elsewhere files are not judged
        if mode is None or mode == "r":
            continue
        with contextlib.suppress(OSError):
            info = os.stat(f"/proc/{proc.pid}/fd/{opened.fd}")  # the open file itself, never a path
            if stat.S_ISREG(info.st_mode):
                sizes[(info.st_dev, info.st_ino)] = info.st_size
    return sizes
