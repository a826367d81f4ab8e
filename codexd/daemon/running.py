"""One task the daemon looks after, in one phase at a time.

```
Idle ──Codex starts, or a live run is taken over──► Watched ──stall, stop, restart──► Stopping(why)
Watched, Stopping ──its process exits──► Finishing(code, why) ──► off the books (its end recorded)
Idle, Waiting ──no process to wait for──► Finishing            └──► Waiting(until) ──► Watched
```

Only its own methods change it, on the loop's thread; only the ledger changes its record
(`status`). `Runs` decides what happens next; this object remembers where the task is.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import psutil

from codexd.daemon import rules
from codexd.daemon.processes import Child
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState

DUE_NOW = float("-inf")  # a task whose deadlines are checked at the next round


class Why(Enum):
    """Why a task's process is being ended: what its end then means."""

    CANCEL = "cancel"  # `codexd stop`
    RESTART = "restart"  # it stalled: resume after a backoff
    RESTART_NOW = "restart_now"  # `codexd restart`
    GIVE_UP = "give_up"  # it stalled with its restarts used up


@dataclass(frozen=True)
class Ending:
    """How a task ends: decided, then recorded."""

    state: TaskState
    line: str  # the last line of progress.log
    error: str | None = None


@dataclass(frozen=True)
class Idle:
    """No process and nothing owed yet: being started, or taken over with its end to decide."""


@dataclass(frozen=True)
class Watched:
    """Its Codex runs: followed, and watched for a stall."""


@dataclass(frozen=True)
class Stopping:
    """Its process tree is being ended; `why` says what its end means."""

    why: Why
    stall: rules.Next | None = None  # what was decided when it stalled (RESTART, GIVE_UP)


@dataclass(frozen=True)
class Finishing:
    """Its process ended. The end is recorded once its last output is read and the disk takes
    it; until then each tick tries again (a backlog, a full disk)."""

    code: int | None
    stopped: Stopping | None = None  # why it was ended; None: how the run ended decides
    ending: Ending | None = None  # an end decided without a run to judge (Codex would not start)


@dataclass(frozen=True)
class Waiting:
    """Owed another run (kept in status.json as `daemon.resume`), due at monotonic `until`."""

    until: float


Phase = Idle | Watched | Stopping | Finishing | Waiting


class Running:
    """A task the daemon looks after: its record, its process, and its phase."""

    def __init__(self, status: TaskStatus, run: int, active: float, folder: tuple[int, int] | None):
        self._status = status
        self.task_id = status.task_id  # (a plain attribute: the loop reads it for every task every round)
        self._run = run  # which process of the task this is; a stale exit notice is ignored
        self._phase: Phase = Idle()
        self._proc: psutil.Process | None = None  # adopted: started by an earlier daemon
        self._popen: Child | None = None  # our own child
        self._active = active  # monotonic time of the last progress
        self._killer: threading.Thread | None = None  # ending its process tree
        self._folder = folder  # its folder's (device, inode): one replaced is not its own
        self._unwritten = False  # the record changed since status.json was last written
        self._written_at = float("-inf")  # monotonic time status.json was last written
        # Monotonic time its deadlines are next checked (runs.check_deadlines sets it); a new
        # phase or record may bring them nearer, so either has them checked at the next round.
        self.due = DUE_NOW

    # -- what it is -------------------------------------------------------------------

    @property
    def status(self) -> TaskStatus:
        return self._status

    @property
    def run(self) -> int:
        return self._run

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def why(self) -> Why | None:
        """Why its process is being (or was) ended, until its end is handled."""
        if isinstance(self._phase, Stopping):
            return self._phase.why
        if isinstance(self._phase, Finishing) and self._phase.stopped is not None:
            return self._phase.stopped.why
        return None

    @property
    def active(self) -> float:
        return self._active

    @property
    def folder(self) -> tuple[int, int] | None:
        return self._folder

    @property
    def adopted(self) -> psutil.Process | None:
        """The process an earlier daemon started, when it is that one that runs."""
        return self._proc

    @property
    def child(self) -> Child | None:
        return self._popen

    @property
    def has_process(self) -> bool:
        return self._proc is not None or self._popen is not None

    @property
    def being_killed(self) -> bool:
        return self._killer is not None and self._killer.is_alive()

    @property
    def root(self) -> psutil.Process | None:
        """The top of its process tree, while it still runs."""
        if self._proc is None and self._popen is not None and self._popen.poll() is None:
            with contextlib.suppress(psutil.Error):
                return psutil.Process(self._popen.pid)
        return self._proc

    # -- its record: the ledger's ---------------------------------------------------------

    @property
    def unwritten(self) -> bool:
        return self._unwritten

    @property
    def written_at(self) -> float:
        return self._written_at

    def record(self, status: TaskStatus, unwritten: bool) -> None:
        self._status, self._unwritten, self.due = status, unwritten, DUE_NOW

    def written(self, at: float) -> None:
        self._unwritten, self._written_at = False, at

    # -- its phases -------------------------------------------------------------------------

    def adopt(self, proc: psutil.Process, active: float) -> None:
        """A process an earlier daemon started is this task's run now."""
        self._proc, self._popen, self._active = proc, None, active
        self._enter(Watched())

    def watch(self, run: int, child: Child, active: float) -> None:
        """A new run of Codex, started by this daemon."""
        self._run, self._popen, self._proc, self._active = run, child, None, active
        self._enter(Watched())

    def moved(self, active: float) -> None:
        """It made progress (at monotonic `active`)."""
        self._active = active

    def stop(self, why: Why, stall: rules.Next | None = None) -> None:
        self._enter(Stopping(why, stall))

    def killing(self, killer: threading.Thread) -> None:
        self._killer = killer

    def exited(self, code: int | None) -> None:
        """Its process ended (or there was none to end): the end is handled next."""
        self._proc = self._popen = None
        phase = self._phase
        if isinstance(phase, Finishing):
            self._enter(Finishing(code, phase.stopped))
        else:
            self._enter(Finishing(code, phase if isinstance(phase, Stopping) else None))

    def ends(self, ending: Ending) -> None:
        """An end decided with no run to judge (Codex would not start): recorded next."""
        self._enter(Finishing(None, None, ending))

    def wait(self, until: float) -> None:
        self._enter(Waiting(until))

    def idle(self) -> None:
        self._enter(Idle())

    def _enter(self, phase: Phase) -> None:
        """Every change of phase: its deadlines may be nearer now, so they are checked next round."""
        self._phase, self.due = phase, DUE_NOW


def folder_id(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino
