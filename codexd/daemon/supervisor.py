"""The daemon loop: takes work in, runs Codex, follows its events, restarts what stalls.

One thread owns every task's state. Other threads (the folder watcher, a waiter per
process, tree killers, the health job) only post messages to the inbox; `tick()` acts.
Deadlines run on the clock's monotonic time, so tests move them with a fake clock.
Every step runs inside the one boundary (`boundary.Boundary.guard`): a bug while handling
one task ends that task (`failed`, "internal error"), never the daemon, at start-up or later.
"""

from __future__ import annotations

import math
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime

import structlog

from codexd.clock import Clock, SystemClock
from codexd.config.settings import Settings
from codexd.daemon import checkup, rules
from codexd.daemon.boundary import Boundary
from codexd.daemon.checkup import Problem
from codexd.daemon.inbox import Assigned, Changed, Exited, Findings, Grown, Inbox, Message, Note, Wake
from codexd.daemon.ledger import Ledger
from codexd.daemon.lock import DaemonLock, SpoolLock
from codexd.daemon.processes import Processes, cgroup_of
from codexd.daemon.recovery import Recovery
from codexd.daemon.requests import Requests
from codexd.daemon.running import DUE_NOW, Finishing, Running, Why
from codexd.daemon.runs import Runs
from codexd.daemon.scheduler import HealthSchedule
from codexd.daemon.starts import Starts
from codexd.daemon.taskwatch import Reads, Watcher, task_watcher
from codexd.daemon.watcher import WatchThread, folder_watcher
from codexd.errors import CodexdError
from codexd.notify.dispatch import Notifications
from codexd.tasks import folders, store, tasktypes
from codexd.tasks.incidents import IncidentKind
from codexd.tasks.spool import Spool

log = structlog.get_logger()
NOTICE_GRACE = 2.0  # at shutdown, deliveries under way get this long to be recorded
# The loop's longest sleep, seconds: routine progress reaches status.json this late at most.
ROUND_MAX = 1.0


@dataclass
class Schedule:
    rescan_at: float = 0.0  # when the spool and the requests folder are next rescanned
    spool_retry_at: float | None = None
    deadlines_at: float = 0.0  # the earliest of the running tasks' `due`


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        stop_tasks_on_exit: bool = False,
        processes: Processes | None = None,
        watch_tasks: bool = True,  # False: every running task is read every round (tests say when)
    ):
        self.clock = clock or SystemClock()
        self.watch_tasks = watch_tasks
        self.stop_tasks_on_exit = stop_tasks_on_exit
        self.processes = processes or Processes()
        self.tasks = store.TaskStore(settings.tasks_dir)
        types = tasktypes.from_settings(settings.types)
        self.spool = Spool(settings.spool_dir, self.tasks, types, self.clock, settings.worktree)
        self.inbox = Inbox()
        self.book = Ledger(self.tasks, settings.daemon.status_interval)
        self.running = self.book.running
        self.queued = self.book.queued
        self.notices = Notifications(
            settings.notify, self.tasks, self.clock, lambda task_id, line: self.inbox.put(Note(task_id, line))
        )
        self.book.listeners.append(self.notices.announce)
        self.runs = Runs(settings, types, self.book, self.clock, self.inbox.put, self.processes)
        self.boundary = Boundary(self.runs)
        self._guard = self.boundary.guard
        self.starts = Starts(self.runs, self.book, self.clock, self._guard)
        self.requests = Requests(settings.tasks_dir / store.REQUESTS, self.runs, self._guard)
        self.recovery = Recovery(self.runs, self.requests, self._guard)
        self.schedule = Schedule()
        self._lock = DaemonLock(settings.tasks_dir)
        self.member = None  # a member of a team on a shared queue (queue.url): codexd/queue
        if settings.queue.url is not None:
            from codexd.queue.member import Member

            self.member = Member(settings, self.recovery, lambda task_id: self.inbox.put(Assigned(task_id)))
            self._lock = self.member.lock(settings.tasks_dir)
        self._spool_lock = SpoolLock(settings.spool_dir, settings.tasks_dir)
        self._stopping = threading.Event()
        self._watcher: WatchThread | None = None
        self._taskwatch: Watcher | None = None
        self.reads = Reads()
        self._health: HealthSchedule | None = None

    # -- the small public surface -------------------------------------------------

    def step(self) -> None:
        """Wait for a message or until something is due, then do one round of work."""
        self.inbox.wait(self._sleep())
        self.tick()

    def _sleep(self) -> float:
        """Not at all with a backlog; the poll interval while something that posts no message is
        under way; else, with the task watch, until the next task's deadline (200 quiet tasks:
        one round a second, not ten)."""
        if self.runs.behind:
            return 0.0
        poll = self.settings.daemon.poll_interval  # (a run that is finishing is always due)
        if self._taskwatch is None or self.queued or self.reads.grown or self.requests.pending:
            return poll
        due = min(self.schedule.deadlines_at, self.reads.next_later)
        return min(max(poll, due - self.clock.monotonic()), ROUND_MAX)

    def tick(self) -> None:
        self._guard(self._tick)  # the last net: nothing that goes wrong in a round ends the daemon

    def _tick(self) -> None:
        now = self.clock.now()
        for message in self.inbox.drain():
            self._handle(message, now)
        if self.clock.monotonic() >= self.schedule.rescan_at or self._spool_retry_due():
            self._intake(now)
            self._take_requests(now)
            self._keep_alive()
        self.runs.behind = False  # each task's follow step says again
        self._tend_all(now)
        self.starts.start_queued(now)
        if self._taskwatch is not None:
            self._taskwatch.watch(self.running.keys())
        self.schedule.deadlines_at = min((r.due for r in self.running.values()), default=math.inf)
        self.book.flush(self.clock.monotonic())
        if self.requests.pending:
            self._guard(self.requests.settle)

    @property
    def settings(self) -> Settings:
        return self.runs.settings  # one copy: a reload replaces it for both

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def request_stop(self) -> None:
        self._stopping.set()
        self.wake()

    def wake(self) -> None:
        """A round of work now (safe in a signal handler: it only posts)."""
        self.inbox.put(Wake())

    def reload(self, new: Settings) -> None:
        """New settings from SIGHUP. The folders stay: moving them needs a restart."""
        old = self.settings
        if (new.tasks_dir, new.spool_dir) != (old.tasks_dir, old.spool_dir):
            log.warning("settings.folders_unchanged", fix="restart the daemon to use new tasks_dir/spool_dir")
            new = new.model_copy(update={"tasks_dir": old.tasks_dir, "spool_dir": old.spool_dir})
        self.runs.settings = new
        self.book.status_interval = new.daemon.status_interval
        self.runs.types = tasktypes.from_settings(new.types)
        for running in self.running.values():
            running.due = DUE_NOW  # its timeouts may be shorter now
        self.spool.known_types = frozenset(self.runs.types)
        self.spool.worktree_default = new.worktree
        if self._health is not None:
            self._health.set_interval(new.health.interval)
        self.notices.configure(new.notify)
        log.info("settings.reloaded")

    # -- start-up and shut-down -----------------------------------------------------

    def start(self) -> None:
        self._take_folders()
        self.notices.start()  # before recovery, which may announce tasks that ended unseen
        if shutil.which(self.settings.codex.command[0]) is None:
            fix = "install Codex (npm install -g @openai/codex) or set codex.command"
            log.warning("codex.not_found", command=self.settings.codex.command[0], fix=fix)
        now = self.clock.now()
        self._guard(self.spool.recover)  # the daemon never crash-loops on its own files
        if self.member is None:
            self._guard(self.recovery.recover, now)
        else:  # the queue hands back whatever must run: tasks_dir holds the team's tasks
            self.member.start()
        self._intake(now)
        self._take_requests(now)
        self.starts.start_queued(now)
        self.book.flush(self.clock.monotonic(), force=True)
        self._watcher = folder_watcher(
            [self.settings.spool_dir, self.settings.tasks_dir / store.REQUESTS],
            lambda: self.inbox.put(Changed()),
        )
        self._watcher.start()
        if self.watch_tasks:
            self._taskwatch = task_watcher(self.tasks.root, lambda *seen: self.inbox.put(Grown(*seen)))
            self.reads.read_all = self._taskwatch.read_all
            self._taskwatch.watch(self.running.keys())
            self._taskwatch.start()
        self._health = HealthSchedule(self._health_job, self.settings.health.interval)
        self._health.start()
        log.info(
            "daemon.started",
            tasks_dir=str(self.tasks.root),
            running=len(self.running),
            queued=len(self.queued),
        )

    def _take_folders(self) -> None:
        """Folders that are private and ours, and held: one daemon per tasks_dir, one per spool."""
        folders.ensure_private(self.settings.tasks_dir, "tasks folder")
        folders.ensure_private(self.settings.tasks_dir / store.REQUESTS, "requests folder")
        folders.ensure_private(self.settings.spool_dir, "spool folder")
        self._lock.acquire()
        try:
            self._spool_lock.acquire()
        except CodexdError:
            self._lock.release()
            raise

    def close(self) -> None:
        log.info("daemon.stopping", stop_tasks=self.stop_tasks_on_exit)
        if self._health:
            self._health.stop()
        if self._watcher:
            self._watcher.stop()
        if self._taskwatch:
            self._taskwatch.stop()
        if self.stop_tasks_on_exit:
            self._stop_all(self.clock.now())
        if self.member is not None:
            self.member.stop(list(self.running.values()), self.settings.daemon.stop_grace)
        self.book.flush(self.clock.monotonic(), force=True)
        self.notices.stop(NOTICE_GRACE)  # what is not yet delivered waits in the outbox
        self._spool_lock.release()
        self._lock.release()
        log.info("daemon.stopped", left_running=sorted(self.running))

    def _stop_all(self, now: datetime) -> None:
        for running in list(self.running.values()):
            running.stop(Why.CANCEL)
            task_dir = self.tasks.dir(running.task_id)
            cgroup = cgroup_of(running.status, task_dir)
            self.processes.kill_tree(running.root, task_dir, self.settings.daemon.stop_grace, cgroup)
            self._guard(self.runs.exited, running, None, now)

    # -- the loop's work ------------------------------------------------------------

    def _handle(self, message: Message, now: datetime) -> None:
        match message:
            case Exited(task_id, run, code):
                running = self.running.get(task_id)
                if running is not None and running.run == run and running.has_process:
                    self._guard(self.runs.exited, running, code, now)
            case Findings(findings):
                for finding in findings:
                    self._guard(self.act_on_finding, finding, now)
            case Note(task_id, line):
                self._guard(self.book.note, task_id, now, line, IncidentKind.NOTICE_LOST)
            case Changed():
                self.schedule.rescan_at = 0.0
            case Grown(task_ids, touched):
                self.reads.grown |= task_ids
                self.reads.touched |= touched
            case Assigned(task_id) if self.member is not None:
                self._guard(self.member.take, task_id, now)
            case Wake():
                pass

    def _tend_all(self, now: datetime) -> None:
        """The round's work on the tasks that have some: read, due, or their folder to check."""
        mono, watch = self.clock.monotonic(), self._taskwatch
        covered = watch.covers if watch is not None else None
        reading = self.reads.due(mono, self.running.keys(), covered)
        seeing = covered if watch is not None and watch.sees_folders else None
        folders = self.reads.folders(mono, self.running.keys(), seeing, reading is None)
        if reading is None or folders is None:
            tending = list(self.running.values())
        else:  # most tasks, most rounds, have nothing: one pass at C speed finds the others
            named = reading | folders
            tending = [r for r in self.running.values() if r.due <= mono or r.task_id in named]
        for running in tending:
            checked = folders is None or running.task_id in folders
            if not (checked and self._folder_lost(running)):
                self._tend(running, now, reading, mono >= running.due)

    def _tend(self, running: Running, now: datetime, reading: set[str] | None, due: bool) -> None:
        """One task's round: the end of its run, what it wrote, its deadlines."""
        if isinstance(running.phase, Finishing):
            self._guard(self.runs.finish_exit, running, now)
        if reading is None or running.task_id in reading or (due and self._at_deadline(running)):
            self._guard(self.follow, running, now)
        if due:
            self._guard(self.runs.check_deadlines, running, now, running.task_id in self.reads.grown)

    def follow(self, running: Running, now: datetime) -> None:
        """One step of reading the task (named as runs.follow: the boundary says what failed)."""
        known = running.status.daemon.rollout
        if self._taskwatch is not None:  # first: a write from now on wakes the loop again
            self._taskwatch.arm(running.task_id, known)
        more = True  # a read that failed (a full disk, a bug: the boundary counts) is tried next round
        try:
            more = self.runs.follow(running, now)
        finally:  # a rollout found by this read is watched from the next, which comes at once
            mono = self.clock.monotonic()
            self.reads.done(running.task_id, mono, more or running.status.daemon.rollout != known)
        if self._taskwatch is not None:
            self.reads.look_for_rollout(running.task_id, running.status, mono)

    def _at_deadline(self, running: Running) -> bool:
        """A stall is judged on all the task wrote: one at its deadline is read, event or not."""
        idle = self.clock.monotonic() - running.active
        return rules.is_stalled(idle, rules.stall_timeout_of(running.status, self.settings.health))

    def _folder_lost(self, running: Running) -> bool:
        """A task whose folder was removed, replaced or made unreadable by hand: its tree is
        ended and it leaves the books (there is nowhere left to record it), once."""
        problem = folders.running_folder_problem(self.tasks.dir(running.task_id), running.folder)
        if problem is None:
            return False
        log.error(
            "task.folder_gone",
            task_id=running.task_id,
            problem=problem,
            fix="its processes were stopped; submit the task again to run it",
        )
        self.book.drop(running.task_id)
        self.boundary.end_tree(running, running.task_id)
        return True

    def _keep_alive(self) -> None:
        """Side activities are supervised too: one that died is logged and started again."""
        self.notices.keep_alive()
        if self._health is not None and not self._health.alive:
            log.error("health.restarted")
            self._health.restart()
        if self._watcher is not None and not self._watcher.alive:
            log.error("watcher.restarted")
            self._watcher.restart()
        if self._taskwatch is not None and not self._taskwatch.alive:
            log.error("taskwatch.restarted")
            self._taskwatch.restart()

    def _take_requests(self, now: datetime) -> None:
        if self.member is None:
            self.requests.take(now)
        else:  # in a team, only the requests of the tasks this daemon holds
            self.member.take_requests(self.requests, now)

    def _spool_retry_due(self) -> bool:
        retry = self.schedule.spool_retry_at
        return retry is not None and self.clock.now().timestamp() >= retry

    def _intake(self, now: datetime) -> None:
        self.schedule.rescan_at = self.clock.monotonic() + self.settings.daemon.rescan_interval
        try:
            accepted, self.schedule.spool_retry_at = self.spool.scan()
        except Exception as exc:  # each file has its own boundary in scan; this is the folder
            log.error("spool.scan_failed", error=str(exc), exc_info=None if isinstance(exc, OSError) else exc)
            return
        for status in accepted:
            log.info("task.accepted", task_id=status.task_id, type=status.type)
            if self.member is not None:
                self.member.submit(status)  # it runs where the shared queue hands it
            else:
                self.queued.append(status)
            self.book.emit(status, "queued")

    # -- the health job's findings ----------------------------------------------------------

    def _health_job(self) -> None:
        """Runs on APScheduler's thread: look, keep the report, then hand the findings to the
        loop. (The spool is rescanned on its own deadline, not here.)"""
        try:
            found = checkup.run(self.tasks.root, self.settings.health, self.clock.now(), self.processes)
        except Exception as exc:  # a failing check is logged; the schedule goes on
            log.error("health.check_failed", error=str(exc))
            return
        self.processes.end_orphans()  # orphans of ended trees that came back to a subreaper daemon
        checkup.keep(found, self.tasks.root)
        self.inbox.put(Findings(found.findings))

    def act_on_finding(self, finding: checkup.Finding, now: datetime) -> None:
        """The check looked from outside; the loop's own state decides what is true now."""
        running = self.running.get(finding.task_id or "")
        if finding.kind == Problem.CHECK_FAILED:
            log.error("health.step_failed", detail=finding.text)
        elif running is None:
            if finding.kind == Problem.ORPHANS and self.book.queued_status(finding.task_id) is None:
                log.warning("task.orphans", task_id=finding.task_id, pids=list(finding.pids))
                task_dir = self.tasks.dir(str(finding.task_id))
                self.runs.in_thread(self.processes.end_tree, None, task_dir, self.settings.daemon.stop_grace)
        elif finding.kind == Problem.STALLED:
            self.runs.check_deadlines(running, now)  # the safety net behind the per-tick check
        elif finding.kind == Problem.DEAD and running.adopted is not None:
            self.runs.check_adopted(running)
