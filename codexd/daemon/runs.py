"""A task's runs: starting Codex, following it, noticing a stall, and what an exit means.

Called only from the supervisor's loop thread. Waiter and killer threads it starts post
their news back through `post`; they never touch a task's record.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import structlog

from codexd import tailing
from codexd.clock import Clock, duration, iso
from codexd.codex import containment, outcome, process
from codexd.config.settings import Settings
from codexd.daemon import checkup, follower, rules
from codexd.daemon.ledger import AfterExit, Ledger, Running, folder_id
from codexd.errors import CodexdError
from codexd.tasks import incidents, intake, store, tasktypes
from codexd.tasks.incidents import IncidentKind
from codexd.tasks.records import Resume, TaskStatus
from codexd.tasks.states import TaskState

log = structlog.get_logger()
KILL_TRIES = 3  # a killer that fails (a process-table hiccup) tries again this often
KILL_RETRY = 1.0  # seconds between those tries


@dataclass(frozen=True)
class Exited:
    """A task's process ended (posted by the thread that waited for it)."""

    task_id: str
    run: int
    code: int | None


@dataclass(frozen=True)
class Ending:
    state: TaskState
    line: str  # the last line of progress.log
    error: str | None = None


class Runs:
    def __init__(
        self,
        settings: Settings,
        types: dict[str, tasktypes.TaskType],
        book: Ledger,
        clock: Clock,
        post: Callable[[Exited], None],
    ):
        self.settings = settings
        self.types = types
        self.book = book
        self.running = book.running
        self.tasks = book.tasks
        self.clock = clock
        self.post = post
        self._runs = 0
        self.behind = False  # a task's output is not all read yet: the loop should not wait

    def adopt(self, status: TaskStatus, proc: psutil.Process | None, now: datetime) -> Running:
        """Take over a task an earlier daemon ran; its stall clock carries on from the record."""
        running = self.track(status)
        running.active = self.clock.monotonic() - (now.timestamp() - checkup.last_progress(status))
        if proc is not None:
            running.proc = proc
            self.in_thread(self._wait_adopted, status.task_id, running.run, proc)
        return running

    # -- starting Codex ----------------------------------------------------------------

    def launch(self, status: TaskStatus, now: datetime) -> None:
        try:
            popen, status = self._spawn(status, None, now)
        except (CodexdError, OSError) as exc:
            results = {"summary": None, "error": str(exc)}
            failed = status.with_(error=str(exc))
            self.book.end(failed, TaskState.FAILED, now, f"Could not start Codex: {exc}", results)
            return
        started = status.with_(started_at=status.started_at or iso(now))
        status = self.book.change(started, TaskState.IN_PROGRESS, now, f"Started Codex (pid {popen.pid})")
        self._watch(self.track(status), popen)

    def _resume(self, running: Running, now: datetime) -> None:
        """Run the task again: resume its Codex session, or start afresh if it has none."""
        status = running.status
        owed = status.daemon.resume or Resume(now.timestamp(), "restart", "it was restarted")
        thread = status.thread_id
        prompt = rules.continuation_prompt(owed.reason, status.progress)
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
            status = self.book.change(status, TaskState.IN_PROGRESS, now, line)  # announces "restarted"
        else:
            running.status = status
            self.book.append(running, now, [line], incident=IncidentKind.RESUMED)
            if owed.kind == "restart":
                self.book.emit(status, "restarted")
        self._watch(running, popen)

    def _spawn(
        self, status: TaskStatus, resume: tuple[str, str] | None, now: datetime
    ) -> tuple[subprocess.Popen[bytes], TaskStatus]:
        task_dir = self.tasks.dir(status.task_id)
        kind = self.types.get(status.type)
        if kind is None:
            raise CodexdError(f"unknown task type {status.type!r}: add [types.{status.type}] to the config")
        codex = self.settings.codex
        cwd = Path(status.cwd or task_dir)
        argv = process.exec_argv(
            codex.command,
            codex.args,
            task_dir=task_dir,
            cwd=cwd,
            login_shell=codex.login_shell,
            output_schema=kind.output_schema,
            resume=resume[0] if resume else None,
        )
        stdin_name, stdin_offset = _stdin(task_dir, resume, status)
        run_start = store.size_of(task_dir / store.EVENTS)
        stderr_start = store.size_of(task_dir / store.STDERR)
        end_cgroup(status, task_dir)  # what the last run left behind, before a new one starts
        place = containment.place(task_dir)
        try:
            launch = process.Launch(
                status.task_id, task_dir, argv, cwd, stdin_offset, tuple(codex.env), place, stdin_name
            )
            popen = process.spawn(launch)
        except BaseException:
            if place.cgroup is not None:
                containment.remove(place.cgroup)
            raise
        cgroup = containment.settled(place, popen.pid)
        cursor = replace(
            status.daemon,
            run_start=run_start,
            stderr_start=stderr_start,
            pid_create_time=process.create_time(popen.pid),
            resume=None,
            active_at=now.timestamp(),
            cgroup=str(cgroup) if cgroup else None,
        )
        return popen, status.with_(pid=popen.pid, daemon=cursor)

    def track(self, status: TaskStatus) -> Running:
        self._runs += 1
        running = Running(status, self._runs, active=self.clock.monotonic())
        running.folder = folder_id(self.tasks.dir(status.task_id))
        self.running[status.task_id] = running
        return running

    def _watch(self, running: Running, popen: subprocess.Popen[bytes]) -> None:
        self._runs += 1
        running.run, running.popen, running.proc = self._runs, popen, None
        running.after_exit, running.stall = AfterExit.FINISH, None
        running.active = self.clock.monotonic()
        self.in_thread(self._wait_child, running.status.task_id, running.run, popen)

    def _wait_child(self, task_id: str, run: int, popen: subprocess.Popen[bytes]) -> None:
        code = None
        try:
            code = popen.wait()
            process.forget(popen.pid)
        except Exception as exc:  # never a silent end: the loop hears of the exit all the same
            log.error("task.wait_failed", task_id=task_id, exc_info=exc)
        finally:
            self.post(Exited(task_id, run, code))

    def _wait_adopted(self, task_id: str, run: int, proc: psutil.Process) -> None:
        try:
            proc.wait()
        except psutil.Error:
            pass
        except Exception as exc:
            log.error("task.wait_failed", task_id=task_id, exc_info=exc)
        finally:
            self.post(Exited(task_id, run, None))

    # -- following a task, and noticing when it stops moving -----------------------------

    def follow(self, running: Running, now: datetime) -> bool:
        """Record one bounded step of what the task wrote; True when more is left to read."""
        moved = follower.advance(self.tasks.dir(running.status.task_id), running.status)
        if moved is None:
            return False
        status = moved.status
        if moved.active:
            status = status.with_(daemon=replace(status.daemon, active_at=now.timestamp()))
        self.book.append(running, now, moved.lines, status)  # may fail: then it is read again
        if moved.active:
            running.active = self.clock.monotonic()
        self.behind = self.behind or moved.more
        return moved.more

    def check_deadlines(self, running: Running, now: datetime) -> None:
        if self.running.get(running.status.task_id) is not running:
            return  # it ended this tick
        mono = self.clock.monotonic()
        if running.resume_due is not None:
            # The old tree must be all gone first: its killer would take the new run for a straggler.
            if mono >= running.resume_due and not running.being_killed:
                self._resume(running, now)
            return
        timeout = rules.stall_timeout_of(running.status, self.settings.health)
        idle = mono - running.active
        watched = running.after_exit == AfterExit.FINISH and running.has_process
        if watched and rules.is_stalled(idle, timeout):
            self._stall(running, now, idle)

    def _stall(self, running: Running, now: datetime, idle: float) -> None:
        status = running.status.with_(stalls=running.status.stalls + 1)
        timeout = rules.stall_timeout_of(status, self.settings.health)
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
        self.restart_stalled(running)

    # -- the end of a run ---------------------------------------------------------------

    def exited(self, running: Running, code: int | None, now: datetime) -> None:
        running.proc = running.popen = None
        folder = cgroup_of(running.status, self.tasks.dir(running.status.task_id))
        if folder is not None:
            containment.remove_if_empty(folder)  # empty cgroups must not pile up between runs
        running.exit = (code,)  # until its end is handled: a full disk, a backlog (or a bug) means later
        if self.follow(running, now):
            return  # the rest is read in the next ticks' steps (finish_exit), then the run is judged
        self._after_exit(running, code, now)
        running.exit = None

    def _after_exit(self, running: Running, code: int | None, now: datetime) -> None:
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
        stderr = run_stderr(task_dir / store.STDERR, status.daemon.stderr_start)
        state, error = outcome.decide(code, run, stderr)
        if state == TaskState.COMPLETED or error is None:
            self._end_run(running, code, now, Ending(TaskState.COMPLETED, "Completed"))
            return
        streak, afresh = status.daemon.streak, status.daemon.afresh
        next_step = rules.after_failure(error, streak, self.settings.health, afresh)
        if next_step.action == "retry":
            counted = status.with_(daemon=replace(status.daemon, streak=streak + 1))
            reason = f"the model endpoint failed ({error})"
            self._owe(running, now, Resume(0, "retry", reason), next_step.delay, next_step.line, counted)
        elif next_step.action == "fresh":
            counted = status.with_(thread_id=None, daemon=replace(status.daemon, afresh=afresh + 1))
            self._owe(running, now, Resume(0, "fresh", ""), next_step.delay, next_step.line, counted)
        else:
            self._end_run(running, code, now, Ending(TaskState.FAILED, next_step.line, next_step.error))

    def _owe(
        self,
        running: Running,
        now: datetime,
        resume: Resume,
        delay: float,
        line: str,
        status: TaskStatus | None = None,
    ) -> None:
        """The task runs again after `delay` seconds (kept in status.json across restarts).
        Nothing changes until its line is written: a full disk means the exit is handled again."""
        status = status or running.status
        due = replace(resume, at=now.timestamp() + delay)
        owed = status.with_(pid=None, daemon=replace(status.daemon, resume=due))
        self.book.append(running, now, [line], owed, incidents.OWED[resume.kind])
        running.after_exit, running.stall = AfterExit.FINISH, None
        running.resume_due = self.clock.monotonic() + delay
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
        running.ending = (code, ending)  # until it is on disk: a full disk means trying again
        self.book.end(done, ending.state, now, ending.line, results)
        # A task that ended leaves nothing running: a server the agent started goes too.
        cgroup = cgroup_of(status, task_dir)
        self.in_thread(kill_tree, None, task_dir, self.settings.daemon.stop_grace, cgroup)

    def finish_exit(self, running: Running, now: datetime) -> None:
        """An exit or an end that could not be written (a full disk) is, when it can be."""
        if running.has_process:
            return
        if running.exit is not None:
            self.exited(running, running.exit[0], now)
        elif running.ending is not None:
            code, ending = running.ending
            self._end_run(running, code, now, ending)

    def restart_stalled(self, running: Running) -> None:
        """Plan what follows a stall (a restart, or giving up), and end the tree if it runs."""
        status = running.status
        idle = self.clock.monotonic() - running.active
        running.stall = rules.after_stall(
            status.stalls, idle, rules.stall_timeout_of(status, self.settings.health), self.settings.health
        )
        running.after_exit = AfterExit.RESTART if running.stall.action == "restart" else AfterExit.GIVE_UP
        if running.has_process:
            self.kill(running)

    def cancel(self, running: Running, now: datetime) -> None:
        if running.after_exit == AfterExit.CANCEL:
            return
        running.after_exit = AfterExit.CANCEL
        if not running.has_process:  # between runs: nothing to wait for
            self.exited(running, None, now)
            return
        self.book.append(running, now, ["Stopping: the task's whole process tree is being ended"])
        self.kill(running)

    def restart_by_hand(self, running: Running, now: datetime) -> None:
        if running.after_exit in (AfterExit.CANCEL, AfterExit.RESTART_NOW):
            return
        if not running.has_process:  # waiting out a backoff: skip the rest, and count a restart
            owed = Resume(now.timestamp(), "restart", "the user restarted it")
            running.status = running.status.with_(daemon=replace(running.status.daemon, resume=owed))
            running.resume_due = self.clock.monotonic()
            return
        line = "Restart requested: stopping its process tree to resume the session"
        self.book.append(running, now, [line], incident=IncidentKind.RESTART_ASKED)
        running.after_exit = AfterExit.RESTART_NOW
        self.kill(running)

    def check_adopted(self, running: Running) -> None:
        """An adopted process the health check saw gone: its waiter should have said so."""
        status = running.status
        if process.find(status.pid, status.daemon.pid_create_time, status.task_id) is None:
            self.post(Exited(status.task_id, running.run, None))

    def kill(self, running: Running) -> None:
        if running.being_killed:
            return  # one killer per tree: a second would take the next run for a straggler
        task_dir = self.tasks.dir(running.status.task_id)
        grace = self.settings.daemon.stop_grace
        cgroup = cgroup_of(running.status, task_dir)
        running.killer = self.in_thread(kill_tree, running.root, task_dir, grace, cgroup)

    def in_thread(self, target: Callable[..., Any], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"codexd-{target.__name__}")
        thread.start()
        return thread


def kill_tree(root: psutil.Process | None, task_dir: Path, grace: float, cgroup: Path | None = None) -> None:
    """`process.kill_tree` on a killer thread: one that fails is logged and tried again. Then
    the orphans a subreaper daemon adopted from ended trees are ended too."""
    for attempt in range(1, KILL_TRIES + 1):
        try:
            process.kill_tree(root, task_dir, grace, cgroup)
            break
        except Exception as exc:
            log.error("task.kill_failed", task_id=task_dir.name, attempt=attempt, exc_info=exc)
            time.sleep(KILL_RETRY)
    end_adopted()


def end_adopted() -> None:
    try:
        ended = process.end_adopted()
    except Exception as exc:
        log.error("task.adopted_end_failed", exc_info=exc)
        return
    if ended:
        log.info("task.adopted_ended", pids=ended)


def cgroup_of(status: TaskStatus, task_dir: Path) -> Path | None:
    """The run's recorded cgroup, if it is plausibly the task's (see containment.recorded)."""
    return containment.recorded(status.daemon.cgroup, task_dir)


def cgroup_of_process(pid: int, task_dir: Path) -> str | None:
    """The cgroup a run taken over without a record is in, if it is one of the task's."""
    found = containment.cgroup_of(pid)
    return str(found) if found and containment.recorded(str(found), task_dir) else None


def end_cgroup(status: TaskStatus, task_dir: Path) -> None:
    folder = cgroup_of(status, task_dir)
    if folder is not None and not containment.end(folder):
        log.warning("task.cgroup_left", task_id=status.task_id, cgroup=str(folder))


def run_stderr(path: Path, start: int) -> list[str]:
    """The last lines the current run wrote to stderr.log (which began at `start`)."""
    data = tailing.tail_bytes(path, tailing.REASON_BYTES, start=start)
    return data.decode("utf-8", "replace").splitlines()[-outcome.STDERR_LINES :]


def _stdin(task_dir: Path, resume: tuple[str, str] | None, status: TaskStatus) -> tuple[str, int]:
    """Codex's stdin: the instructions' body, or a resumed session's prompt (a file of its own)."""
    if resume:
        store.write_atomic(task_dir / store.RESUME_PROMPT, resume[1].encode(), durable=False)
        return store.RESUME_PROMPT, 0
    # Checked as at intake: a planted link or a grown file is refused, never read whole.
    return store.INSTRUCTIONS, intake.body_offset(status, task_dir / store.INSTRUCTIONS)
