"""The daemon loop: takes work in, runs Codex, follows its events, restarts what stalls.

One thread owns every task's state. Other threads (the folder watcher, a waiter per
process, tree killers, the health job) only post messages to the inbox; `tick()` acts.
Deadlines run on the clock's monotonic time, so tests move them with a fake clock.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import structlog

from codexd import checkup, follower, frontmatter, health, outcome, runner, store, tasktypes
from codexd.clock import Clock, SystemClock, duration, iso
from codexd.errors import CodexdError, StorageError
from codexd.intake import Spool, ensure_private_dir
from codexd.ledger import AfterExit, Ledger, Running
from codexd.lock import DaemonLock
from codexd.records import Resume, TaskStatus
from codexd.scheduler import HealthSchedule
from codexd.settings import Settings
from codexd.states import TaskState
from codexd.watcher import FolderWatcher

log = structlog.get_logger()


@dataclass(frozen=True)
class Exited:
    task_id: str
    run: int
    code: int | None


@dataclass(frozen=True)
class Sweep:
    found: checkup.Checkup


Message = Exited | Sweep | str


@dataclass(frozen=True)
class Ending:
    state: TaskState
    line: str  # the last line of progress.log
    error: str | None = None


@dataclass
class Schedule:
    rescan_at: float = 0.0
    spool_retry_at: float | None = None
    runs: int = 0


class Supervisor:
    def __init__(self, settings: Settings, clock: Clock | None = None, stop_tasks_on_exit: bool = False):
        self.settings = settings
        self.clock = clock or SystemClock()
        self.stop_tasks_on_exit = stop_tasks_on_exit
        self.tasks = store.TaskStore(settings.tasks_dir)
        self.types = tasktypes.from_settings(settings.types)
        self.spool = Spool(settings.spool_dir, self.tasks, self.types, lambda: iso(self.clock.now()))
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.book = Ledger(self.tasks)
        self.running = self.book.running
        self.queued: list[TaskStatus] = []
        self.schedule = Schedule()
        self._lock = DaemonLock(settings.tasks_dir)
        self._stopping = threading.Event()
        self._watcher: FolderWatcher | None = None
        self._health: HealthSchedule | None = None
        self._pending: list[Message] = []

    # -- the small public surface -------------------------------------------------

    def step(self) -> None:
        """Wait for a message or the poll interval, then do one round of work."""
        with contextlib.suppress(queue.Empty):
            self._pending.append(self.inbox.get(timeout=self.settings.daemon.poll_interval))
        self.tick()

    def tick(self) -> None:
        now = self.clock.now()
        for message in self._drain():
            self._handle(message, now)
        if self.clock.monotonic() >= self.schedule.rescan_at or self._spool_retry_due():
            self._intake(now)
            self._take_requests(now)
        for running in list(self.running.values()):
            self._guard(self._follow, running, now)
            self._guard(self._check_deadlines, running, now)
        self._start_queued(now)
        self.book.flush()

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
        self.settings = new
        self.types = tasktypes.from_settings(new.types)
        self.spool.known_types = frozenset(self.types)
        if self._health is not None:
            self._health.set_interval(new.health.interval)
        log.info("settings.reloaded")

    # -- start-up and shut-down -----------------------------------------------------

    def start(self) -> None:
        self.settings.tasks_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ensure_private_dir(self.settings.spool_dir)
        (self.settings.tasks_dir / store.REQUESTS).mkdir(mode=0o700, exist_ok=True)
        self._lock.acquire()
        if shutil.which(self.settings.codex.command[0]) is None:
            log.warning(
                "codex.not_found",
                command=self.settings.codex.command[0],
                fix="install Codex (npm install -g @openai/codex) or set codex.command",
            )
        now = self.clock.now()
        self.spool.recover()
        self._recover(now)
        self._intake(now)
        self._take_requests(now)
        self._start_queued(now)
        self.book.flush()
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

    def close(self) -> None:
        log.info("daemon.stopping", stop_tasks=self.stop_tasks_on_exit)
        if self._health:
            self._health.stop()
        if self._watcher:
            self._watcher.stop()
        if self.stop_tasks_on_exit:
            self._stop_all(self.clock.now())
        self.book.flush()
        self._lock.release()
        log.info("daemon.stopped", left_running=sorted(self.running))

    def _stop_all(self, now: datetime) -> None:
        for running in list(self.running.values()):
            running.after_exit = AfterExit.CANCEL
            task_dir = self.tasks.dir(running.status.task_id)
            runner.kill_tree(running.root, task_dir, self.settings.daemon.stop_grace)
            self._guard(self._exited, running, None, now)

    def _recover(self, now: datetime) -> None:
        """Re-adopt live tasks, finish those that ended unseen, queue the waiting ones."""
        live = runner.processes_by_task(self.tasks.root)
        for data in sorted(self.tasks.all_statuses(), key=lambda d: d.get("created_at", "")):
            try:
                status = TaskStatus.from_dict(data)
            except (KeyError, ValueError, TypeError) as exc:
                log.error("task.unreadable", task_id=data.get("task_id"), error=str(exc))
                continue
            if status.status == TaskState.QUEUED:
                self._kill_strays(status.task_id, live)  # a start that a crash cut short
                self.queued.append(status)
            elif status.is_active:
                self._guard(self._readopt, status, live, now)
        self.queued.sort(key=lambda s: (s.created_at, s.daemon.accepted_ns))

    def _readopt(self, status: TaskStatus, live: dict[str, list[psutil.Process]], now: datetime) -> None:
        if status.daemon.log and store.truncate_to(
            self.tasks.file(status.task_id, store.PROGRESS), status.daemon.log
        ):
            log.info("task.log_rewound", task_id=status.task_id)  # lines the last daemon did not record
        proc = runner.find(status.pid, status.daemon.pid_create_time, status.task_id)
        running = self._track(status)
        running.active = self.clock.monotonic() - (now.timestamp() - checkup.last_progress(status))
        if proc is not None:
            log.info("task.readopted", task_id=status.task_id, pid=status.pid)
            running.proc = proc
            self._in_thread(self._wait_adopted, status.task_id, running.run, proc)
            if status.status == TaskState.STALLED:  # a restart that a crash cut short
                self._restart_stalled(running, now)
            return
        self._kill_strays(status.task_id, live)
        owed = status.daemon.resume
        if owed is not None:
            running.resume_due = self.clock.monotonic() + max(0.0, owed.at - now.timestamp())
            log.info("task.resume_owed", task_id=status.task_id, kind=owed.kind)
        elif status.status == TaskState.STALLED:
            self._restart_stalled(running, now)
            self._exited(running, None, now)
        else:
            log.info("task.ended_unseen", task_id=status.task_id)
            self._exited(running, None, now)

    def _restart_stalled(self, running: Running, now: datetime) -> None:
        status = running.status
        idle = now.timestamp() - checkup.last_progress(status)
        running.stall = health.after_stall(
            status.stalls, idle, self._stall_timeout(status), self.settings.health
        )
        running.after_exit = AfterExit.RESTART if running.stall.action == "restart" else AfterExit.GIVE_UP
        if running.has_process:
            self._kill(running)

    def _kill_strays(self, task_id: str, live: dict[str, list[psutil.Process]]) -> None:
        if task_id in live:
            log.warning("task.strays", task_id=task_id, pids=[p.pid for p in live[task_id]])
            runner.kill_tree(None, self.tasks.dir(task_id), self.settings.daemon.stop_grace)

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
                self._guard(self._exited, running, message.code, now)
        elif isinstance(message, Sweep):
            self._guard(self._act_on, message.found, now)
        elif message == "changed":
            self.schedule.rescan_at = 0.0

    def _guard(self, action: Callable[..., None], *args: Any) -> None:
        """One failing task never stops the loop; the error is logged and retried next tick."""
        try:
            action(*args)
        except (CodexdError, OSError) as exc:
            log.error("task.error", action=action.__name__, error=str(exc))

    def _spool_retry_due(self) -> bool:
        retry = self.schedule.spool_retry_at
        return retry is not None and self.clock.now().timestamp() >= retry

    def _intake(self, now: datetime) -> None:
        self.schedule.rescan_at = self.clock.monotonic() + self.settings.daemon.rescan_interval
        try:
            accepted, self.schedule.spool_retry_at = self.spool.scan()
        except (CodexdError, OSError) as exc:
            log.error("spool.scan_failed", error=str(exc))
            return
        for status in accepted:
            log.info("task.accepted", task_id=status.task_id, type=status.type)
            self.queued.append(status)
            self.book.emit(status, TaskState.QUEUED)

    def _take_requests(self, now: datetime) -> None:
        folder = self.settings.tasks_dir / store.REQUESTS
        actions = {"stop": self._cancel, "restart": self._restart_by_hand}
        for request in sorted(folder.glob("[!.]*.*")):  # not the writers' hidden temp files
            task_id, _, kind = request.name.rpartition(".")
            if kind in actions:
                self._guard(actions[kind], task_id, now)
                request.unlink(missing_ok=True)

    def _cancel(self, task_id: str, now: datetime) -> None:
        waiting = next((s for s in self.queued if s.task_id == task_id), None)
        if waiting is not None:
            self.queued.remove(waiting)
            self.book.end(waiting, TaskState.CANCELLED, now, "Cancelled before it started", {"summary": None})
            return
        running = self.running.get(task_id)
        if running is None or running.after_exit == AfterExit.CANCEL:
            return
        running.after_exit = AfterExit.CANCEL
        if not running.has_process:  # between runs: nothing to wait for
            self._exited(running, None, now)
            return
        self.book.append(running, now, ["Stopping: the task's whole process tree is being ended"])
        self._kill(running)

    def _restart_by_hand(self, task_id: str, now: datetime) -> None:
        running = self.running.get(task_id)
        if running is None or running.after_exit in (AfterExit.CANCEL, AfterExit.RESTART_NOW):
            return
        if not running.has_process:
            running.resume_due = self.clock.monotonic()  # skip what is left of the backoff
            return
        self.book.append(running, now, ["Restart requested: stopping its process tree to resume the session"])
        running.after_exit = AfterExit.RESTART_NOW
        self._kill(running)

    def _start_queued(self, now: datetime) -> None:
        while self.queued and len(self.running) < self.settings.max_parallel:
            self._guard(self._launch, self.queued.pop(0), now)

    def _kill(self, running: Running) -> None:
        task_dir = self.tasks.dir(running.status.task_id)
        self._in_thread(runner.kill_tree, running.root, task_dir, self.settings.daemon.stop_grace)

    def _in_thread(self, target: Callable[..., Any], *args: Any) -> None:
        threading.Thread(target=target, args=args, daemon=True, name=f"codexd-{target.__name__}").start()

    # -- starting Codex ----------------------------------------------------------------

    def _launch(self, status: TaskStatus, now: datetime) -> None:
        try:
            popen, status = self._spawn(status, None, now)
        except (CodexdError, OSError) as exc:
            results = {"summary": None, "error": str(exc)}
            failed = status.with_(error=str(exc))
            self.book.end(failed, TaskState.FAILED, now, f"Could not start Codex: {exc}", results)
            return
        started = status.with_(started_at=status.started_at or iso(now))
        status = self.book.change(started, TaskState.IN_PROGRESS, now, f"Started Codex (pid {popen.pid})")
        self._watch(self._track(status), popen)

    def _resume(self, running: Running, now: datetime) -> None:
        """Run the task again: resume its Codex session, or start afresh if it has none."""
        status = running.status
        owed = status.daemon.resume or Resume(now.timestamp(), "restart", "it was restarted")
        thread = status.thread_id
        prompt = health.continuation_prompt(owed.reason, status.progress)
        running.resume_due = None
        try:
            popen, status = self._spawn(status, (thread, prompt) if thread else None, now)
        except (CodexdError, OSError) as exc:
            failed = Ending(TaskState.FAILED, f"Could not start Codex: {exc}", str(exc))
            self._end_run(running, None, now, failed)
            return
        counts = {"restarts": status.restarts + 1} if owed.kind == "restart" else {}
        counts = {"retries": status.retries + 1} if owed.kind == "retry" else counts
        status = status.with_(**counts)
        what = f"Resumed Codex session {thread}" if thread else "Started the task afresh"
        line = f"{what} (pid {popen.pid}; restarts {status.restarts}, retries {status.retries})"
        if status.status == TaskState.STALLED:
            status = self.book.change(status, TaskState.IN_PROGRESS, now, line)
        else:
            running.status = status
            self.book.append(running, now, [line])
        self._watch(running, popen)

    def _spawn(
        self, status: TaskStatus, resume: tuple[str, str] | None, now: datetime
    ) -> tuple[subprocess.Popen[bytes], TaskStatus]:
        task_dir = self.tasks.dir(status.task_id)
        kind = self.types.get(status.type)
        if kind is None:
            raise CodexdError(f"unknown task type {status.type!r}: add [types.{status.type}] to the config")
        codex = self.settings.codex
        argv = runner.exec_argv(
            codex.command,
            codex.args,
            task_dir=task_dir,
            cwd=Path(status.cwd or task_dir),
            login_shell=codex.login_shell,
            output_schema=kind.output_schema,
            resume=resume,
        )
        instructions = (task_dir / store.INSTRUCTIONS).read_bytes()
        offset = None if resume else frontmatter.parse(instructions).body_offset
        run_start = store.size_of(task_dir / store.EVENTS)
        cwd = Path(status.cwd or task_dir)
        popen = runner.spawn(runner.Launch(status.task_id, task_dir, argv, cwd, offset))
        cursor = replace(
            status.daemon,
            run_start=run_start,
            pid_create_time=runner.create_time(popen.pid),
            resume=None,
            active_at=now.timestamp(),
        )
        return popen, status.with_(pid=popen.pid, daemon=cursor)

    def _track(self, status: TaskStatus) -> Running:
        self.schedule.runs += 1
        running = Running(status, self.schedule.runs, active=self.clock.monotonic())
        self.running[status.task_id] = running
        return running

    def _watch(self, running: Running, popen: subprocess.Popen[bytes]) -> None:
        self.schedule.runs += 1
        running.run, running.popen, running.proc = self.schedule.runs, popen, None
        running.after_exit, running.stall = AfterExit.FINISH, None
        running.active = self.clock.monotonic()
        self._in_thread(self._wait_child, running.status.task_id, running.run, popen)

    def _wait_child(self, task_id: str, run: int, popen: subprocess.Popen[bytes]) -> None:
        code = popen.wait()
        self.inbox.put(Exited(task_id, run, code))

    def _wait_adopted(self, task_id: str, run: int, proc: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error):
            proc.wait()
        self.inbox.put(Exited(task_id, run, None))

    # -- following a task, and noticing when it stops moving -----------------------------

    def _follow(self, running: Running, now: datetime) -> None:
        moved = follower.advance(self.tasks.dir(running.status.task_id), running.status)
        if moved is None:
            return
        status = moved.status
        if moved.active:
            status = status.with_(daemon=replace(status.daemon, active_at=now.timestamp()))
            running.active = self.clock.monotonic()
        running.status = status
        running.dirty = True
        self.book.append(running, now, moved.lines)

    def _check_deadlines(self, running: Running, now: datetime) -> None:
        if self.running.get(running.status.task_id) is not running:
            return  # it ended this tick
        mono = self.clock.monotonic()
        if running.resume_due is not None:
            if mono >= running.resume_due:
                self._resume(running, now)
            return
        timeout = self._stall_timeout(running.status)
        idle = mono - running.active
        watched = running.after_exit == AfterExit.FINISH and running.has_process
        if watched and health.is_stalled(idle, timeout):
            self._stall(running, now, idle)

    def _stall_timeout(self, status: TaskStatus) -> float:
        return status.stall_timeout or self.settings.health.stall_timeout

    def _stall(self, running: Running, now: datetime, idle: float) -> None:
        status = running.status.with_(stalls=running.status.stalls + 1)
        timeout = self._stall_timeout(status)
        log.warning(
            "task.stalled",
            task_id=status.task_id,
            idle=round(idle, 3),
            late_by=round(idle - timeout, 3),  # how long after the deadline it was noticed
            stalls=status.stalls,
        )
        line = f"Stalled: no progress for {duration(idle)} (stall_timeout {duration(timeout)})"
        running.status = self.book.change(
            status, TaskState.STALLED, now, line + "; stopping its process tree"
        )
        self._restart_stalled(running, now)

    # -- the end of a run ---------------------------------------------------------------

    def _exited(self, running: Running, code: int | None, now: datetime) -> None:
        running.proc = running.popen = None
        self._follow(running, now)
        after, stall = running.after_exit, running.stall
        if after == AfterExit.CANCEL:
            line = "Cancelled: the task's processes were stopped"
            self._end_run(running, code, now, Ending(TaskState.CANCELLED, line))
        elif after == AfterExit.GIVE_UP and stall is not None:
            self._end_run(running, code, now, Ending(TaskState.FAILED, stall.line, stall.error))
        elif after == AfterExit.RESTART and stall is not None:
            reason = "it made no progress for too long, so its processes were stopped"
            self._owe(running, now, Resume(0, "restart", reason), stall.delay, stall.line)
        elif after == AfterExit.RESTART_NOW:
            self._owe(running, now, Resume(0, "restart", "the user restarted it"), 0.0, "Restarting now")
        else:
            self._judge(running, code, now)

    def _judge(self, running: Running, code: int | None, now: datetime) -> None:
        """A run ended on its own: done, worth another try, or failed."""
        status = running.status
        task_dir = self.tasks.dir(status.task_id)
        run = outcome.summarize(store.lines_from(task_dir / store.EVENTS, status.daemon.run_start))
        state, error = outcome.decide(code, run, store.tail_lines(task_dir / store.STDERR, 5))
        if state == TaskState.COMPLETED or error is None:
            self._end_run(running, code, now, Ending(TaskState.COMPLETED, "Completed"))
            return
        streak = status.daemon.streak
        next_step = health.after_failure(error, streak, self.settings.health)
        if next_step.action == "retry":
            running.status = status.with_(daemon=replace(status.daemon, streak=streak + 1))
            reason = f"the model endpoint failed ({error})"
            self._owe(running, now, Resume(0, "retry", reason), next_step.delay, next_step.line)
        elif next_step.action == "fresh":
            running.status = status.with_(thread_id=None)
            self._owe(running, now, Resume(0, "fresh", ""), 0.0, next_step.line)
        else:
            self._end_run(running, code, now, Ending(TaskState.FAILED, next_step.line, next_step.error))

    def _owe(self, running: Running, now: datetime, resume: Resume, delay: float, line: str) -> None:
        """The task runs again after `delay` seconds (kept in status.json across restarts)."""
        running.after_exit, running.stall = AfterExit.FINISH, None
        running.resume_due = self.clock.monotonic() + delay
        due = replace(resume, at=now.timestamp() + delay)
        running.status = running.status.with_(pid=None, daemon=replace(running.status.daemon, resume=due))
        self.book.append(running, now, [line])
        log.info("task.resume_owed", task_id=running.status.task_id, kind=resume.kind, delay=delay)

    def _end_run(self, running: Running, code: int | None, now: datetime, ending: Ending) -> None:
        status = running.status
        task_dir = self.tasks.dir(status.task_id)
        results, counts, progress = tasktypes.build_results(
            self.types.get(status.type, tasktypes.BUILTIN["generic"]),
            store.read_text(task_dir / store.LAST_MESSAGE),
            status.progress,
        )
        if ending.error:
            results["error"] = ending.error
        cursor = replace(status.daemon, resume=None)
        done = status.with_(
            results=counts, progress=progress, exit_code=code, error=ending.error, daemon=cursor
        )
        self.book.end(done, ending.state, now, ending.line, results)
        self._in_thread(runner.kill_tree, None, task_dir, self.settings.daemon.stop_grace)

    # -- the health job's findings ----------------------------------------------------------

    def _health_job(self) -> None:
        """Runs on APScheduler's thread: look, then hand the findings to the loop."""
        try:
            found = checkup.run(self.tasks.root, self.settings.health, self.clock.now())
        except Exception as exc:  # a failing check is logged; the schedule goes on
            log.error("health.check_failed", error=str(exc))
            return
        self.inbox.put(Sweep(found))

    def _act_on(self, found: checkup.Checkup, now: datetime) -> None:
        self._intake(now)  # the folder watcher can miss events: rescan behind it
        self._take_requests(now)
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
                self._in_thread(runner.kill_tree, None, task_dir, self.settings.daemon.stop_grace)
        elif finding.kind == "stalled":
            self._check_deadlines(running, now)  # the safety net behind the per-tick check
        elif finding.kind == "dead" and running.proc is not None:
            self._check_adopted(running)

    def _check_adopted(self, running: Running) -> None:
        """An adopted process the health check saw gone: its waiter should have said so."""
        status = running.status
        if runner.find(status.pid, status.daemon.pid_create_time, status.task_id) is None:
            self.inbox.put(Exited(status.task_id, running.run, None))

    def _is_queued(self, task_id: str | None) -> bool:
        return any(s.task_id == task_id for s in self.queued)
