"""The daemon loop: takes work in, runs Codex, follows its events, restarts what stalls.

One thread owns every task's state. Other threads (the folder watcher, a waiter per
process, tree killers, the health job) only post messages to the inbox; `tick()` acts.
Deadlines run on the clock's monotonic time, so tests move them with a fake clock.
Every step runs inside `_guard`, the one boundary: a bug while handling one task ends that
task (`failed`, "internal error"), never the daemon, at start-up or later.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import structlog

from codexd.clock import Clock, SystemClock, iso
from codexd.codex import process
from codexd.config.settings import Settings
from codexd.daemon import checkup, runs
from codexd.daemon.ledger import AfterExit, Ledger, Running
from codexd.daemon.lock import DaemonLock, SpoolLock
from codexd.daemon.rules import STRIKES
from codexd.daemon.runs import Exited, Runs
from codexd.daemon.scheduler import HealthSchedule
from codexd.daemon.watcher import FolderWatcher
from codexd.errors import CodexdError, StorageError
from codexd.notify.dispatch import Notifications
from codexd.tasks import folders, store, taskid, tasktypes
from codexd.tasks.incidents import IncidentKind
from codexd.tasks.records import TaskStatus
from codexd.tasks.spool import Spool
from codexd.tasks.states import TaskState

log = structlog.get_logger()


@dataclass(frozen=True)
class Sweep:
    found: checkup.Checkup


@dataclass(frozen=True)
class Note:
    """A line for a task's progress.log from another thread (an undeliverable notice)."""

    task_id: str
    line: str


Message = Exited | Sweep | Note | str
NOTICE_GRACE = 2.0  # at shutdown, deliveries under way get this long to be recorded
REPEAT_QUIET = 60.0  # seconds before the same error is logged again
FOLDER_CHECK = 1.0  # seconds between checks that running tasks' folders are still theirs
# What the loop was doing for a task, for the error of a task that a bug ended.
DOING = {
    "follow": "following its events",
    "exited": "handling the end of its run",
    "finish_exit": "handling the end of its run",
    "check_deadlines": "checking its deadlines",
    "launch": "starting it",
    "_recover_one": "taking it up at start-up",
    "_take_request": "handling a stop or restart request",
    "_act_on_finding": "acting on a health check",
    "note": "writing its log",
}
ONE_TIME = frozenset({"launch", "_recover_one"})  # steps not tried again: a bug there ends the task at once


@dataclass(frozen=True)
class Handled:
    """A stop or restart request acted on: it stays until its effect is recorded."""

    stamp: int  # the request file's mtime_ns: a newer request is acted on again
    task_id: str
    kind: str
    run: int  # the run it acted on: a restart is carried out when the next one began


@dataclass
class Schedule:
    rescan_at: float = 0.0
    spool_retry_at: float | None = None
    folders_at: float = 0.0  # when running tasks' folders are next checked


class Supervisor:
    def __init__(self, settings: Settings, clock: Clock | None = None, stop_tasks_on_exit: bool = False):
        self.clock = clock or SystemClock()
        self.stop_tasks_on_exit = stop_tasks_on_exit
        self.tasks = store.TaskStore(settings.tasks_dir)
        types = tasktypes.from_settings(settings.types)
        self.spool = Spool(settings.spool_dir, self.tasks, types, self.clock)
        # SimpleQueue: put() is reentrant, so a signal handler that posts while the loop is
        # inside get() cannot deadlock it (queue.Queue holds a lock there).
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.book = Ledger(self.tasks, settings.daemon.status_interval)
        self.running = self.book.running
        self.notices = Notifications(
            settings.notify, self.tasks, self.clock, lambda task_id, line: self.inbox.put(Note(task_id, line))
        )
        self.book.listeners.append(self.notices.announce)
        self.runs = Runs(settings, types, self.book, self.clock, self.inbox.put)
        self.queued: list[TaskStatus] = []
        self.schedule = Schedule()
        self._lock = DaemonLock(settings.tasks_dir)
        self._spool_lock = SpoolLock(settings.spool_dir, settings.tasks_dir)
        self._stopping = threading.Event()
        self._watcher: FolderWatcher | None = None
        self._health: HealthSchedule | None = None
        self._pending: list[Message] = []
        self._said: dict[str, float] = {}  # error -> when it was last logged
        self._strikes: dict[tuple[str | None, str], int] = {}  # (task, action) -> unexpected errors in a row
        self._handled: dict[Path, Handled] = {}  # requests acted on, until their effect is recorded

    # -- the small public surface -------------------------------------------------

    def step(self) -> None:
        """Wait for a message or the poll interval, then do one round of work."""
        wait = 0.0 if self.runs.behind else self.settings.daemon.poll_interval  # a backlog: at once
        with contextlib.suppress(queue.Empty):
            self._pending.append(self.inbox.get(timeout=wait))
        self.tick()

    def tick(self) -> None:
        self._guard(self._tick)  # the last net: nothing that goes wrong in a round ends the daemon

    def _tick(self) -> None:
        now = self.clock.now()
        for message in self._drain():
            self._handle(message, now)
        if self.clock.monotonic() >= self.schedule.rescan_at or self._spool_retry_due():
            self._intake(now)
            self._take_requests(now)
            self._keep_alive()
        self.runs.behind = False  # each task's follow step says again
        check_folders = self._folders_due()
        for running in list(self.running.values()):
            if check_folders and self._folder_lost(running):
                continue
            self._guard(self.runs.finish_exit, running, now)
            self._guard(self.runs.follow, running, now)
            self._guard(self.runs.check_deadlines, running, now)
        self._start_queued(now)
        self.book.flush(self.clock.monotonic())
        if self._handled:
            self._guard(self._settle_requests)

    @property
    def settings(self) -> Settings:
        return self.runs.settings  # one copy: a reload replaces it for both

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def request_stop(self) -> None:
        self._stopping.set()
        self.inbox.put("wake")

    def reload(self, new: Settings) -> None:
        """New settings from SIGHUP. The folders stay: moving them needs a restart."""
        old = self.settings
        if (new.tasks_dir, new.spool_dir) != (old.tasks_dir, old.spool_dir):
            log.warning("settings.folders_unchanged", fix="restart the daemon to use new tasks_dir/spool_dir")
            new = new.model_copy(update={"tasks_dir": old.tasks_dir, "spool_dir": old.spool_dir})
        self.runs.settings = new
        self.book.status_interval = new.daemon.status_interval
        self.runs.types = tasktypes.from_settings(new.types)
        self.spool.known_types = frozenset(self.runs.types)
        if self._health is not None:
            self._health.set_interval(new.health.interval)
        self.notices.configure(new.notify)
        log.info("settings.reloaded")

    # -- start-up and shut-down -----------------------------------------------------

    def start(self) -> None:
        self._take_folders()
        self.notices.start()  # before recovery, which may announce tasks that ended unseen
        if shutil.which(self.settings.codex.command[0]) is None:
            log.warning(
                "codex.not_found",
                command=self.settings.codex.command[0],
                fix="install Codex (npm install -g @openai/codex) or set codex.command",
            )
        now = self.clock.now()
        self._guard(self.spool.recover)  # the daemon never crash-loops on its own files
        self._guard(self._recover, now)
        self._intake(now)
        self._take_requests(now)
        self._start_queued(now)
        self.book.flush(self.clock.monotonic(), force=True)
        self._watcher = FolderWatcher(
            [self.settings.spool_dir, self.settings.tasks_dir / store.REQUESTS],
            lambda: self.inbox.put("changed"),
        )
        self._watcher.start()
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
        if self.stop_tasks_on_exit:
            self._stop_all(self.clock.now())
        self.book.flush(self.clock.monotonic(), force=True)
        self.notices.stop(NOTICE_GRACE)  # what is not yet delivered waits in the outbox
        self._spool_lock.release()
        self._lock.release()
        log.info("daemon.stopped", left_running=sorted(self.running))

    def _stop_all(self, now: datetime) -> None:
        for running in list(self.running.values()):
            running.after_exit = AfterExit.CANCEL
            task_dir = self.tasks.dir(running.status.task_id)
            cgroup = runs.cgroup_of(running.status, task_dir)
            process.kill_tree(running.root, task_dir, self.settings.daemon.stop_grace, cgroup)
            self._guard(self.runs.exited, running, None, now)

    def _recover(self, now: datetime) -> None:
        """Re-adopt live tasks, finish those that ended unseen, queue the waiting ones."""
        live = process.processes_by_task(self.tasks.root)
        wanted = self._requested()
        records = [d for d in self.tasks.all_statuses() if isinstance(d, dict)]
        for data in sorted(records, key=lambda d: str(d.get("created_at", ""))):
            try:
                status = TaskStatus.from_dict(data)
            except (KeyError, ValueError, TypeError) as exc:
                log.error("task.unreadable", task_id=data.get("task_id"), error=str(exc))
                continue
            self._guard(self._recover_one, status, live, wanted.get(status.task_id, {}), now)
        self.queued.sort(key=lambda s: (s.created_at, s.daemon.accepted_ns))

    def _recover_one(
        self, status: TaskStatus, live: dict[str, list[psutil.Process]], wanted: dict[str, int], now: datetime
    ) -> None:
        if status.status == TaskState.QUEUED and not self._take_over(status, live, now):
            self._kill_strays(status.task_id, live)  # a tree it cannot make sense of, if any
            self.queued.append(status)
        elif status.is_active:
            self._readopt(status, live, wanted, now)

    def _requested(self) -> dict[str, dict[str, int]]:
        """Stop and restart requests waiting in the requests folder: by task, kind -> mtime_ns."""
        found: dict[str, dict[str, int]] = {}
        with contextlib.suppress(OSError):
            for request, task_id, kind in self._requests():
                with contextlib.suppress(OSError):
                    found.setdefault(task_id, {})[kind] = request.stat().st_mtime_ns
        return found

    def _requests(self) -> list[tuple[Path, str, str]]:
        """`stop` and `restart` requests in the requests folder, in order: (file, task id, kind).
        Not the writers' hidden temp files, and no name that is not a task id."""
        found = []
        for request in sorted((self.settings.tasks_dir / store.REQUESTS).glob("[!.]*.*")):
            task_id, _, kind = request.name.rpartition(".")
            if kind in ("stop", "restart") and taskid.is_valid(task_id):
                found.append((request, task_id, kind))
        return found

    def _take_over(self, status: TaskStatus, live: dict[str, list[psutil.Process]], now: datetime) -> bool:
        """A queued task that has a Codex run: the last daemon died between starting it and
        recording that. Take the run over, or its outcome if it has ended, rather than throw
        the work away and run it again."""
        root = process.root_of(live.get(status.task_id, []))
        try:
            if root is not None:
                self._adopt_unrecorded(status, root, now)
            elif status.task_id not in live and self._ran_unrecorded(status):
                self._finish_unrecorded(status, now)
            else:
                return False  # never started, or a tree it cannot make sense of
        except (psutil.Error, CodexdError, OSError) as exc:
            log.warning("task.take_over_failed", task_id=status.task_id, error=str(exc))
            return False
        log.info("task.taken_over", task_id=status.task_id, pid=root.pid if root else None)
        return True

    def _ran_unrecorded(self, status: TaskStatus) -> bool:
        return store.size_of(self.tasks.file(status.task_id, store.EVENTS)) > status.daemon.events

    def _adopt_unrecorded(self, status: TaskStatus, root: psutil.Process, now: datetime) -> None:
        began = root.create_time()
        cgroup = runs.cgroup_of_process(root.pid, self.tasks.dir(status.task_id))  # never recorded
        cursor = replace(status.daemon, pid_create_time=began, active_at=now.timestamp(), cgroup=cgroup)
        started = status.with_(
            pid=root.pid, started_at=iso(datetime.fromtimestamp(began, UTC)), daemon=cursor
        )
        line = f"Started Codex (pid {root.pid}; taken over from a daemon that stopped while starting it)"
        self.runs.adopt(self.book.change(started, TaskState.IN_PROGRESS, now, line), root, now)

    def _finish_unrecorded(self, status: TaskStatus, now: datetime) -> None:
        began = self.tasks.file(status.task_id, store.EVENTS).stat().st_mtime
        started = status.with_(started_at=iso(datetime.fromtimestamp(began, UTC)))
        line = "Codex ran while no daemon recorded it (a daemon stopped while starting it)"
        running = self.runs.adopt(self.book.change(started, TaskState.IN_PROGRESS, now, line), None, now)
        self.runs.exited(running, None, now)  # it has ended: its event log decides how

    def _readopt(
        self, status: TaskStatus, live: dict[str, list[psutil.Process]], wanted: dict[str, int], now: datetime
    ) -> None:
        if status.daemon.log and store.truncate_to(
            self.tasks.file(status.task_id, store.PROGRESS), status.daemon.log
        ):
            log.info("task.log_rewound", task_id=status.task_id)  # lines the last daemon did not record
        proc = process.find(status.pid, status.daemon.pid_create_time, status.task_id)
        running = self.runs.adopt(status, proc, now)
        if proc is not None:
            log.info("task.readopted", task_id=status.task_id, pid=status.pid)
            if status.status == TaskState.STALLED:  # a restart that a crash cut short
                self.runs.restart_stalled(running)
            return
        self._kill_strays(status.task_id, live)
        owed = status.daemon.resume
        restart = "restart" in wanted and not began_after(status, wanted["restart"])
        if "stop" in wanted or (restart and owed is None):
            # The last daemon was stopping or restarting it when it died: carry that out.
            running.after_exit = AfterExit.CANCEL if "stop" in wanted else AfterExit.RESTART_NOW
            self.runs.exited(running, None, now)
        elif owed is not None:
            running.resume_due = self.clock.monotonic() + max(0.0, owed.at - now.timestamp())
            log.info("task.resume_owed", task_id=status.task_id, kind=owed.kind)
        elif status.status == TaskState.STALLED:
            self.runs.restart_stalled(running)
            self.runs.exited(running, None, now)
        else:
            log.info("task.ended_unseen", task_id=status.task_id)
            self.runs.exited(running, None, now)

    def _kill_strays(self, task_id: str, live: dict[str, list[psutil.Process]]) -> None:
        if task_id in live:
            log.warning("task.strays", task_id=task_id, pids=[p.pid for p in live[task_id]])
            process.kill_tree(None, self.tasks.dir(task_id), self.settings.daemon.stop_grace)

    # -- the loop's work ------------------------------------------------------------

    def _drain(self) -> Iterator[Message]:
        while self._pending:
            yield self._pending.pop(0)
        while True:
            try:
                yield self.inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, message: Message, now: datetime) -> None:
        if isinstance(message, Exited):
            running = self.running.get(message.task_id)
            if running is not None and running.run == message.run and running.has_process:
                self._guard(self.runs.exited, running, message.code, now)
        elif isinstance(message, Sweep):
            self._guard(self._act_on, message.found, now)
        elif isinstance(message, Note):
            self._guard(self.book.note, message.task_id, now, message.line, IncidentKind.NOTICE_LOST)
        elif message == "changed":
            self.schedule.rescan_at = 0.0

    def _guard(self, action: Callable[..., object], *args: Any) -> None:
        """The daemon's one boundary: nothing that goes wrong for one task stops the loop.

        An expected error (a full disk) is logged and retried next tick; the same one again
        is logged once a minute, not ten times a second. Anything else is a bug: logged with
        its traceback, and if it happens again for the same task the task ends `failed`
        (see `_unexpected`). KeyboardInterrupt and SystemExit are not caught."""
        try:
            action(*args)
        except (CodexdError, OSError) as exc:
            key, mono = f"{action.__name__}: {exc}", self.clock.monotonic()
            if self._said.get(key, float("-inf")) + REPEAT_QUIET <= mono:
                self._said[key] = mono
                log.error("task.error", action=action.__name__, error=str(exc))
        except Exception as exc:
            self._unexpected(action.__name__, args, exc)
        else:
            if self._strikes:
                self._strikes.pop((_task_of(args), action.__name__), None)

    def _unexpected(self, action: str, args: tuple[Any, ...], exc: Exception) -> None:
        """A bug while handling a task: the step is tried again (next tick, next pass) up to
        STRIKES times in a row; then, or at once for a one-time step, the task ends `failed`."""
        task_id = _task_of(args)
        key = (task_id, action)
        strikes = self._strikes[key] = self._strikes.get(key, 0) + 1
        mono = self.clock.monotonic()
        if strikes == 1 or self._said.get(str(key), float("-inf")) + REPEAT_QUIET <= mono:
            self._said[str(key)] = mono
            log.error("task.internal_error", task_id=task_id, action=action, strikes=strikes, exc_info=exc)
        if task_id is None or (strikes < STRIKES and action not in ONE_TIME):
            return
        del self._strikes[key]
        what = f"{type(exc).__name__}: {exc} while {DOING.get(action, action)}"
        hint = args[0] if isinstance(args[0], TaskStatus) else None
        self._give_up(task_id, f"internal error: {what} (see the daemon log)", hint)

    def _give_up(self, task_id: str, error: str, hint: TaskStatus | None) -> None:
        """End a task a bug keeps from being handled: its tree killed, `failed`, its cursor past
        the input that caused it. If even that fails, it leaves the books all the same."""
        running = self.running.get(task_id)
        status = running.status if running else self._queued_status(task_id) or hint
        if status is None or status.is_terminal:
            return  # nothing the daemon runs (a note for an ended task, say)
        self._end_tree(running, task_id)
        now = self.clock.now()
        try:
            self.book.end(
                self._past_input(status).with_(error=error),
                TaskState.FAILED,
                now,
                f"Failed: {error}",
                {"summary": None, "error": error},
            )
        except Exception as exc:
            log.error("task.end_failed", task_id=task_id, error=str(exc), exc_info=exc)
        finally:
            self.running.pop(task_id, None)
            self.queued = [s for s in self.queued if s.task_id != task_id]
        log.error("task.given_up", task_id=task_id, error=error)

    def _past_input(self, status: TaskStatus) -> TaskStatus:
        """The cursor moved past everything written so far: a new daemon does not read it again."""
        task_dir = self.tasks.dir(status.task_id)
        events, reports = store.size_of(task_dir / store.EVENTS), store.size_of(task_dir / store.REPORTS)
        stderr = store.size_of(task_dir / store.STDERR)
        cursor = replace(status.daemon, events=events, reports=reports, stderr=stderr, resume=None)
        return status.with_(daemon=cursor)

    def _end_tree(self, running: Running | None, task_id: str) -> None:
        root, cgroup, task_dir = None, None, self.tasks.dir(task_id)
        with contextlib.suppress(Exception):
            root = running.root if running else None
            cgroup = runs.cgroup_of(running.status, task_dir) if running else None
        self.runs.in_thread(runs.kill_tree, root, task_dir, self.settings.daemon.stop_grace, cgroup)

    def _queued_status(self, task_id: str) -> TaskStatus | None:
        return next((s for s in self.queued if s.task_id == task_id), None)

    def _folders_due(self) -> bool:
        """Once a second, not every tick: a folder removed by hand is rare, the tick is hot."""
        mono = self.clock.monotonic()
        if mono < self.schedule.folders_at:
            return False
        self.schedule.folders_at = mono + FOLDER_CHECK
        return True

    def _folder_lost(self, running: Running) -> bool:
        """A task whose folder was removed, replaced or made unreadable by hand: its tree is
        ended and it leaves the books (there is nowhere left to record it), once."""
        problem = folder_problem(self.tasks.dir(running.task_id), running.folder)
        if problem is None:
            return False
        log.error(
            "task.folder_gone",
            task_id=running.task_id,
            problem=problem,
            fix="its processes were stopped; submit the task again to run it",
        )
        self.running.pop(running.task_id, None)
        self._end_tree(running, running.task_id)
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
            self.queued.append(status)
            self.book.emit(status, "queued")

    def _take_requests(self, now: datetime) -> None:
        for request, task_id, kind in self._requests():
            self._guard(self._take_request, task_id, request, kind, now)

    def _take_request(self, task_id: str, request: Path, kind: str, now: datetime) -> None:
        """Act on a request once; it is removed only when its effect is recorded, so a daemon
        killed in between leaves it to the next (acting on it again changes nothing)."""
        stamp = request.stat().st_mtime_ns
        seen = self._handled.get(request)
        if seen is None and kind == "restart" and self._began_after(task_id, stamp):
            request.unlink(missing_ok=True)  # carried out by a daemon that died before removing it
            return
        if seen is None or seen.stamp != stamp:
            running = self.running.get(task_id)
            run = running.run if running else 0
            (self._cancel if kind == "stop" else self._restart_by_hand)(task_id, now)
            self._handled[request] = Handled(stamp, task_id, kind, run)
        self._settle_requests()

    def _began_after(self, task_id: str, stamp: int) -> bool:
        running = self.running.get(task_id)
        return running is not None and began_after(running.status, stamp)

    def _settle_requests(self) -> None:
        """Remove the requests whose effect is recorded."""
        for request, handled in list(self._handled.items()):
            if self._carried_out(handled.task_id, handled.kind, handled.run):
                request.unlink(missing_ok=True)
                del self._handled[request]

    def _carried_out(self, task_id: str, kind: str, run: int) -> bool:
        """A stop when the task is off the books (its end recorded); a restart when its next run began."""
        running = self.running.get(task_id)
        if running is None:
            return self._queued_status(task_id) is None
        return kind == "restart" and running.run != run and running.has_process

    def _cancel(self, task_id: str, now: datetime) -> None:
        waiting = self._queued_status(task_id)
        if waiting is not None:
            self.book.end(waiting, TaskState.CANCELLED, now, "Cancelled before it started", {"summary": None})
            self.queued.remove(waiting)  # only once its end is recorded
        elif task_id in self.running:
            self.runs.cancel(self.running[task_id], now)

    def _restart_by_hand(self, task_id: str, now: datetime) -> None:
        if task_id in self.running:
            self.runs.restart_by_hand(self.running[task_id], now)

    def _start_queued(self, now: datetime) -> None:
        while self.queued and len(self.running) < self.settings.max_parallel:
            self._guard(self.runs.launch, self.queued.pop(0), now)

    # -- the health job's findings ----------------------------------------------------------

    def _health_job(self) -> None:
        """Runs on APScheduler's thread: look, then hand the findings to the loop."""
        try:
            found = checkup.run(self.tasks.root, self.settings.health, self.clock.now())
        except Exception as exc:  # a failing check is logged; the schedule goes on
            log.error("health.check_failed", error=str(exc))
            return
        runs.end_adopted()  # orphans of ended trees that came back to a subreaper daemon
        self.inbox.put(Sweep(found))

    def _act_on(self, found: checkup.Checkup, now: datetime) -> None:
        self._intake(now)  # the folder watcher can miss events: rescan behind it
        self._take_requests(now)
        self._keep_alive()
        for finding in found.findings:
            self._guard(self._act_on_finding, finding, now)
        try:
            store.write_atomic(self.tasks.root / store.HEALTH, store.dump_json(found.to_dict()))
        except StorageError as exc:
            log.error("health.write_failed", error=str(exc))
        log.info("health.checked", findings=len(found.findings), took=round(found.took, 3))

    def _act_on_finding(self, finding: checkup.Finding, now: datetime) -> None:
        """The check looked from outside; the loop's own state decides what is true now."""
        running = self.running.get(finding.task_id or "")
        if finding.kind == "check_failed":
            log.error("health.step_failed", detail=finding.text)
        elif running is None:
            if finding.kind == "orphans" and not self._is_queued(finding.task_id):
                log.warning("task.orphans", task_id=finding.task_id, pids=list(finding.pids))
                task_dir = self.tasks.dir(str(finding.task_id))
                self.runs.in_thread(runs.kill_tree, None, task_dir, self.settings.daemon.stop_grace)
        elif finding.kind == "stalled":
            self.runs.check_deadlines(running, now)  # the safety net behind the per-tick check
        elif finding.kind == "dead" and running.proc is not None:
            self.runs.check_adopted(running)

    def _is_queued(self, task_id: str | None) -> bool:
        return any(s.task_id == task_id for s in self.queued)


def _task_of(args: tuple[Any, ...]) -> str | None:
    """Which task a guarded step is about, from its first argument."""
    first = args[0] if args else None
    if isinstance(first, Running | TaskStatus):
        return first.task_id
    if isinstance(first, checkup.Finding):
        return first.task_id
    return first if isinstance(first, str) else None


def folder_problem(path: Path, known: tuple[int, int] | None) -> str | None:
    """What is wrong with a running task's folder, if anything."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"its folder {path} was removed"
    except OSError as exc:
        return f"its folder {path} cannot be read ({exc.strerror or exc})"
    if not stat.S_ISDIR(info.st_mode) or (known is not None and known != (info.st_dev, info.st_ino)):
        return f"its folder {path} was replaced"
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return f"its folder {path} cannot be read or written"
    return None


def began_after(status: TaskStatus, stamp: int) -> bool:
    """The task's current Codex run began (well) after a request written at `stamp` (ns):
    a restart request older than the run was carried out by a daemon that died since."""
    began = status.daemon.pid_create_time
    return began is not None and began > stamp / 1e9 + process.CREATE_TIME_TOLERANCE
