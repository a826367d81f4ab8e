"""The daemon loop: takes work in, runs Codex, follows its events, records the outcome.

One thread owns every task's state. Other threads (the folder watcher, a waiter per
process, tree killers) only post messages to the inbox; `tick()` acts on them.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import structlog

from codexd import frontmatter, outcome, runner, store, tasktypes
from codexd.clock import Clock, iso, utc_now
from codexd.errors import CodexdError, StorageError
from codexd.intake import Spool, ensure_private_dir
from codexd.lock import DaemonLock
from codexd.progress import apply_event, apply_report
from codexd.records import LastLog, TaskStatus
from codexd.settings import Settings
from codexd.states import TaskState, can_change
from codexd.watcher import FolderWatcher

log = structlog.get_logger()
Listener = Callable[[TaskStatus, TaskState], None]


@dataclass(frozen=True)
class Exited:
    task_id: str
    run: int
    code: int | None


@dataclass
class Running:
    status: TaskStatus
    proc: psutil.Process | None
    run: int
    stopping: bool = False
    dirty: bool = False


@dataclass
class Schedule:
    rescan_at: float = 0.0
    spool_retry_at: float | None = None
    runs: int = 0


class Supervisor:
    def __init__(self, settings: Settings, clock: Clock = utc_now, stop_tasks_on_exit: bool = False):
        self.settings = settings
        self.clock = clock
        self.stop_tasks_on_exit = stop_tasks_on_exit
        self.tasks = store.TaskStore(settings.tasks_dir)
        self.types = tasktypes.from_settings(settings.types)
        self.spool = Spool(settings.spool_dir, self.tasks, self.types, lambda: iso(self.clock()))
        self.inbox: queue.Queue[Exited | str] = queue.Queue()
        self.running: dict[str, Running] = {}
        self.queued: list[TaskStatus] = []
        self.listeners: list[Listener] = []
        self.schedule = Schedule()
        self._lock = DaemonLock(settings.tasks_dir)
        self._stopping = threading.Event()
        self._watcher: FolderWatcher | None = None
        self._pending: list[Exited | str] = []

    # -- the small public surface -------------------------------------------------

    def run(self) -> None:
        self.start()
        try:
            while not self._stopping.is_set():
                self._wait(self.settings.daemon.poll_interval)
                self.tick(self.clock())
        finally:
            self.close()

    def request_stop(self) -> None:
        self._stopping.set()
        self.inbox.put("wake")

    def tick(self, now: datetime) -> None:
        for message in self._drain():
            self._handle(message, now)
        if time.monotonic() >= self.schedule.rescan_at or self._spool_retry_due():
            self._intake(now)
            self._take_requests(now)
        for running in list(self.running.values()):
            self._guard(self._follow, running, now)
        self._start_queued(now)
        self._flush()

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
        now = self.clock()
        self.spool.recover()
        self._recover(now)
        self._intake(now)
        self._take_requests(now)
        self._start_queued(now)
        self._watcher = FolderWatcher(
            [self.settings.spool_dir, self.settings.tasks_dir / store.REQUESTS],
            lambda: self.inbox.put("changed"),
        )
        self._watcher.start()
        log.info(
            "daemon.started",
            tasks_dir=str(self.tasks.root),
            running=len(self.running),
            queued=len(self.queued),
        )

    def close(self) -> None:
        if self._watcher:
            self._watcher.stop()
        if self.stop_tasks_on_exit:
            self._stop_all(self.clock())
        self._flush()
        self._lock.release()
        log.info("daemon.stopped", left_running=sorted(self.running))

    def _stop_all(self, now: datetime) -> None:
        for running in list(self.running.values()):
            running.stopping = True
            runner.kill_tree(running.proc, running.status.task_id, self.settings.daemon.stop_grace)
            self._finish(running, None, now)

    def _recover(self, now: datetime) -> None:
        """Re-adopt live tasks, finish those that ended unseen, queue the waiting ones."""
        live = runner.processes_by_task()
        for data in sorted(self.tasks.all_statuses(), key=lambda d: d.get("created_at", "")):
            try:
                status = TaskStatus.from_dict(data)
            except (KeyError, ValueError) as exc:
                log.error("task.unreadable", task_id=data.get("task_id"), error=str(exc))
                continue
            if status.status == TaskState.QUEUED:
                self._kill_strays(status.task_id, live)  # a start that a crash cut short
                self.queued.append(status)
            elif status.is_active:
                self._readopt(status, live, now)
        self.queued.sort(key=lambda s: (s.created_at, s.daemon.accepted_ns))

    def _readopt(self, status: TaskStatus, live: dict[str, list[psutil.Process]], now: datetime) -> None:
        if status.daemon.log and store.truncate_to(
            self.tasks.file(status.task_id, store.PROGRESS), status.daemon.log
        ):
            log.info("task.log_rewound", task_id=status.task_id)  # lines the last daemon did not record
        proc = runner.find(status.pid, status.daemon.pid_create_time, status.task_id)
        running = self._track(status, proc)
        if proc is not None:
            log.info("task.readopted", task_id=status.task_id, pid=status.pid)
            self._in_thread(self._wait_adopted, status.task_id, running.run, proc)
            return
        self._kill_strays(status.task_id, live)
        log.info("task.ended_unseen", task_id=status.task_id)
        self._finish(running, None, now)

    def _kill_strays(self, task_id: str, live: dict[str, list[psutil.Process]]) -> None:
        if task_id in live:
            log.warning("task.strays", task_id=task_id, pids=[p.pid for p in live[task_id]])
            runner.kill_tree(None, task_id, self.settings.daemon.stop_grace)

    # -- the loop's work ------------------------------------------------------------

    def _wait(self, timeout: float) -> None:
        with contextlib.suppress(queue.Empty):
            self._pending.append(self.inbox.get(timeout=timeout))

    def _drain(self) -> Iterator[Exited | str]:
        while self._pending:
            yield self._pending.pop(0)
        while True:
            try:
                yield self.inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, message: Exited | str, now: datetime) -> None:
        if isinstance(message, Exited):
            running = self.running.get(message.task_id)
            if running is not None and running.run == message.run:
                self._guard(self._finish, running, message.code, now)
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
        return retry is not None and time.time() >= retry

    def _intake(self, now: datetime) -> None:
        self.schedule.rescan_at = time.monotonic() + self.settings.daemon.rescan_interval
        try:
            accepted, self.schedule.spool_retry_at = self.spool.scan()
        except (CodexdError, OSError) as exc:
            log.error("spool.scan_failed", error=str(exc))
            return
        for status in accepted:
            log.info("task.accepted", task_id=status.task_id, type=status.type)
            self.queued.append(status)
            self._emit(status, TaskState.QUEUED)

    def _take_requests(self, now: datetime) -> None:
        folder = self.settings.tasks_dir / store.REQUESTS
        for request in sorted(folder.glob("*.stop")):
            task_id = request.name.removesuffix(".stop")
            self._guard(self._cancel, task_id, now)
            request.unlink(missing_ok=True)

    def _cancel(self, task_id: str, now: datetime) -> None:
        waiting = next((s for s in self.queued if s.task_id == task_id), None)
        if waiting is not None:
            self.queued.remove(waiting)
            self._end(waiting, TaskState.CANCELLED, now, "Cancelled before it started", {"summary": None})
            return
        running = self.running.get(task_id)
        if running is None or running.stopping:
            return
        running.stopping = True
        self._append(running, now, ["Stopping: the task's whole process tree is being ended"])
        self._in_thread(runner.kill_tree, running.proc, task_id, self.settings.daemon.stop_grace)

    def _start_queued(self, now: datetime) -> None:
        while self.queued and len(self.running) < self.settings.max_parallel:
            self._guard(self._launch, self.queued.pop(0), now)

    def _launch(self, status: TaskStatus, now: datetime) -> None:
        try:
            launch = self._prepare(status)
            popen = runner.spawn(launch)
        except (CodexdError, OSError) as exc:
            results = {"summary": None, "error": str(exc)}
            self._end(
                status.with_(error=str(exc)), TaskState.FAILED, now, f"Could not start Codex: {exc}", results
            )
            return
        events_size = launch.task_dir.joinpath(store.EVENTS).stat().st_size
        cursor = replace(status.daemon, run_start=events_size, pid_create_time=runner.create_time(popen.pid))
        started = status.with_(pid=popen.pid, started_at=status.started_at or iso(now), daemon=cursor)
        status = self._change(started, TaskState.IN_PROGRESS, now, f"Started Codex (pid {popen.pid})")
        running = self._track(status, None)
        self._in_thread(self._wait_child, status.task_id, running.run, popen)

    def _prepare(self, status: TaskStatus) -> runner.Launch:
        task_dir = self.tasks.dir(status.task_id)
        kind = self.types.get(status.type)
        if kind is None:
            raise CodexdError(f"unknown task type {status.type!r}: add [types.{status.type}] to the config")
        parsed = frontmatter.parse((task_dir / store.INSTRUCTIONS).read_bytes())
        cwd = Path(status.cwd or task_dir)
        codex = self.settings.codex
        argv = runner.exec_argv(
            codex.command,
            codex.args,
            task_dir=task_dir,
            cwd=cwd,
            login_shell=codex.login_shell,
            output_schema=kind.output_schema,
        )
        return runner.Launch(status.task_id, task_dir, argv, cwd, parsed.body_offset)

    def _track(self, status: TaskStatus, proc: psutil.Process | None) -> Running:
        self.schedule.runs += 1
        running = Running(status, proc, self.schedule.runs)
        self.running[status.task_id] = running
        return running

    def _wait_child(self, task_id: str, run: int, popen: subprocess.Popen[bytes]) -> None:
        code = popen.wait()
        self.inbox.put(Exited(task_id, run, code))

    def _wait_adopted(self, task_id: str, run: int, proc: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error):
            proc.wait()
        self.inbox.put(Exited(task_id, run, None))

    def _in_thread(self, target: Callable[..., Any], *args: Any) -> None:
        threading.Thread(target=target, args=args, daemon=True, name=f"codexd-{target.__name__}").start()

    # -- following a task's files ------------------------------------------------------

    def _follow(self, running: Running, now: datetime) -> None:
        status = running.status
        task_dir = self.tasks.dir(status.task_id)
        lines: list[str] = []
        progress, thread, cursor = status.progress, status.thread_id, status.daemon
        for raw, end in _complete_lines(task_dir / store.EVENTS, cursor.events):
            event = _json(raw)
            if event is not None:
                update = apply_event(progress, event, thread)
                progress, thread = update.progress, update.thread_id or thread
                lines += update.lines
            cursor = replace(cursor, events=end)
        for raw, end in _complete_lines(task_dir / store.REPORTS, cursor.reports):
            report = _json(raw)
            if report is not None:
                update = apply_report(progress, report)
                progress = update.progress
                lines += update.lines
            cursor = replace(cursor, reports=end)
        if cursor != status.daemon:
            running.status = status.with_(progress=progress, thread_id=thread, daemon=cursor)
            running.dirty = True
            self._append(running, now, lines)

    def _append(self, running: Running, now: datetime, lines: list[str]) -> None:
        if not lines:
            return
        at = iso(now)
        status = running.status
        size = store.append_line(
            self.tasks.file(status.task_id, store.PROGRESS), "\n".join(f"{at} {line}" for line in lines)
        )
        daemon = replace(status.daemon, log=size)
        running.status = status.with_(last_log=LastLog(at, lines[-1]), updated_at=at, daemon=daemon)
        running.dirty = True

    def _flush(self) -> None:
        for running in self.running.values():
            if running.dirty:
                try:
                    self.tasks.write_status(running.status)
                    running.dirty = False
                except StorageError as exc:
                    log.error("status.write_failed", task_id=running.status.task_id, error=str(exc))

    # -- the end of a run ---------------------------------------------------------------

    def _finish(self, running: Running, code: int | None, now: datetime) -> None:
        self._follow(running, now)
        status = running.status
        task_dir = self.tasks.dir(status.task_id)
        if running.stopping:
            state, error, line = TaskState.CANCELLED, None, "Cancelled: the task's processes were stopped"
        else:
            run = outcome.summarize(_lines(task_dir / store.EVENTS, status.daemon.run_start))
            state, error = outcome.decide(code, run, store.tail_lines(task_dir / store.STDERR, 5))
            line = "Completed" if state == TaskState.COMPLETED else f"Failed: {error}"
        results, counts, progress = tasktypes.build_results(
            self.types.get(status.type, tasktypes.BUILTIN["generic"]),
            _read_text(task_dir / store.LAST_MESSAGE),
            status.progress,
        )
        if error:
            results["error"] = error
        del self.running[status.task_id]
        done = status.with_(results=counts, progress=progress, exit_code=code, error=error)
        self._end(done, state, now, line, results)
        self._in_thread(runner.kill_tree, None, status.task_id, self.settings.daemon.stop_grace)

    def _end(
        self, status: TaskStatus, state: TaskState, now: datetime, line: str, results: dict[str, Any]
    ) -> None:
        """Every ended task gets results.json, then its final state."""
        self.tasks.write_results(status.task_id, results)
        self._change(status.with_(pid=None, finished_at=iso(now)), state, now, line)

    # -- the one place a task's state changes -----------------------------------------------

    def _change(
        self, status: TaskStatus, new: TaskState, now: datetime, line: str, **fields: Any
    ) -> TaskStatus:
        old = status.status
        if not can_change(old, new):
            raise CodexdError(f"task {status.task_id}: {old} -> {new} is not allowed")
        at = iso(now)
        size = store.append_line(self.tasks.file(status.task_id, store.PROGRESS), f"{at} {line}")
        changed = status.with_(status=new, updated_at=at, last_log=LastLog(at, line), **fields)
        changed = changed.with_(daemon=replace(changed.daemon, log=size))
        self.tasks.write_status(changed)
        if status.task_id in self.running:
            self.running[status.task_id].status = changed
            self.running[status.task_id].dirty = False
        log.info("task.state", task_id=status.task_id, old=old.value, new=new.value)
        self._emit(changed, old)
        return changed

    def _emit(self, status: TaskStatus, old: TaskState) -> None:
        for listener in self.listeners:
            try:
                listener(status, old)
            except Exception as exc:  # a listener must never break supervision
                log.error("listener.failed", task_id=status.task_id, error=str(exc))


def _lines(path: Path, offset: int) -> Iterator[bytes]:
    with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
        f.seek(offset)
        yield from f


def _complete_lines(path: Path, offset: int) -> Iterator[tuple[bytes, int]]:
    """Whole lines after `offset`, each with the offset just past it; a partial last line waits."""
    while True:
        data = store.read_from(path, offset)
        cut = data.rfind(b"\n")
        if cut < 0:
            return
        for raw in data[: cut + 1].splitlines(keepends=True):
            offset += len(raw)
            yield raw, offset
        if len(data) < (1 << 20):
            return


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
