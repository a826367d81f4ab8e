"""A task's runs: starting Codex, following it, noticing a stall, and what an exit means.

Called only from the supervisor's loop thread. Each task is a `Running` in one phase (see
`running`); the methods here move it on, and every change of its record goes through the
ledger. Waiter and killer threads they start post their news back through `post`; they
never touch a task.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import structlog

from codexd import tailing
from codexd.clock import Clock, iso
from codexd.codex import containment, outcome
from codexd.config.settings import Settings
from codexd.daemon import busy, checkup, follower, launcher, rules, usagelimit
from codexd.daemon.inbox import Exited
from codexd.daemon.ledger import Ledger
from codexd.daemon.processes import Child, Processes, cgroup_of
from codexd.daemon.running import (
    DUE_NOW,
    Ending,
    Finishing,
    Running,
    Stopping,
    Waiting,
    Watched,
    Why,
    folder_id,
)
from codexd.errors import CodexdError
from codexd.tasks import incidents, store, tasktypes
from codexd.tasks.frozen import replace
from codexd.tasks.incidents import IncidentKind
from codexd.tasks.records import Resume, ResumeKind, TaskStatus
from codexd.tasks.states import TaskState

log = structlog.get_logger()
BY_HAND = "the user restarted it"
KILLED_AGAIN = 0.1  # seconds: a backoff that is over waits for its old tree's end, looked at this often


class Runs:
    def __init__(
        self,
        settings: Settings,
        types: dict[str, tasktypes.TaskType],
        book: Ledger,
        clock: Clock,
        post: Callable[[Exited], None],
        processes: Processes,
    ):
        self.settings = settings
        self.types = types
        self.book = book
        self.running = book.running
        self.tasks = book.tasks
        self.clock = clock
        self.post = post
        self.processes = processes
        self._runs = 0
        self._enders: dict[str, threading.Thread] = {}  # ending the trees of tasks that ended
        self.busy = busy.Tracker()  # what silent tasks' trees are doing (tests give it a fake tree)
        self.behind = False  # a task's output is not all read yet: the loop should not wait
        self.limit = usagelimit.UsageLimit(book)  # the account's

    def track(self, status: TaskStatus) -> Running:
        self._runs += 1
        running = Running(
            status, self._runs, self.clock.monotonic(), folder_id(self.tasks.dir(status.task_id))
        )
        self.running[status.task_id] = running
        return running

    def adopt(self, status: TaskStatus, proc: psutil.Process | None, now: datetime) -> Running:
        """Take over a task an earlier daemon ran; its stall clock carries on from the record."""
        running = self.track(status)
        active = self.clock.monotonic() - (now.timestamp() - checkup.last_progress(status))
        running.moved(active)
        if proc is not None:
            running.adopt(proc, active)
            self.in_thread(self._wait_adopted, status.task_id, running.run, proc)
        return running

    # -- starting Codex ----------------------------------------------------------------

    def launch(self, status: TaskStatus, now: datetime) -> None:
        """A queued task's first run; a retried one (`codexd retry`) resumes its session."""
        owed, thread = status.daemon.resume, status.thread_id
        prompt = rules.continuation_prompt(owed.reason, status.progress) if owed else ""
        resume = (thread, prompt) if owed and thread else None
        try:
            popen, status = self._spawn(status, resume, now)
        except (CodexdError, OSError) as exc:
            results = {"summary": None, "error": str(exc)}
            failed = status.with_(error=str(exc), daemon=replace(status.daemon, resume=None))
            self.book.end(failed, TaskState.FAILED, now, f"Could not start Codex: {exc}", results)
            return
        started = status.with_(started_at=status.started_at or iso(now))
        what = f"Resumed Codex session {thread}" if resume else "Started Codex"
        status = self.book.change(started, TaskState.IN_PROGRESS, now, f"{what} (pid {popen.pid})")
        self._watch(self.track(status), popen)

    def _resume(self, running: Running, now: datetime) -> None:
        """Run the task again: resume its Codex session, or start afresh if it has none."""
        status = running.status
        owed = status.daemon.resume or Resume(now.timestamp(), ResumeKind.RESTART, "it was restarted")
        thread = status.thread_id
        prompt = rules.continuation_prompt(owed.reason, status.progress)
        running.idle()  # owed no more: a start whose line cannot be written is not made twice
        try:
            popen, status = self._spawn(status, (thread, prompt) if thread else None, now)
        except (CodexdError, OSError) as exc:
            running.ends(Ending(TaskState.FAILED, f"Could not start Codex: {exc}", str(exc)))
            self.finish_exit(running, now)
            return
        counts = {"restarts": status.restarts + 1} if owed.kind == ResumeKind.RESTART else {}
        counts = {"retries": status.retries + 1} if owed.kind == ResumeKind.RETRY else counts
        status = status.with_(**counts, waiting=None)  # a usage-limit wait is over
        what = f"Resumed Codex session {thread}" if thread else "Started the task afresh"
        line = f"{what} (pid {popen.pid}; restarts {status.restarts}, retries {status.retries})"
        if status.status == TaskState.STALLED:
            self.book.change(status, TaskState.IN_PROGRESS, now, line)  # announces "restarted"
        else:
            self.book.append(running, now, [line], status, incident=IncidentKind.RESUMED)
            if owed.kind == ResumeKind.RESTART:
                self.book.emit(status, "restarted")
        self._watch(running, popen)

    def _spawn(
        self, status: TaskStatus, resume: tuple[str, str] | None, now: datetime
    ) -> tuple[Child, TaskStatus]:
        kind = self.types.get(status.type)
        if kind is None:
            raise CodexdError(f"unknown task type {status.type!r}: add [types.{status.type}] to the config")
        task_dir = self.tasks.dir(status.task_id)
        return launcher.start(self.processes, self.settings.codex, kind, status, task_dir, resume, now)

    def _watch(self, running: Running, popen: Child) -> None:
        self._runs += 1
        running.watch(self._runs, popen, self.clock.monotonic())
        self.in_thread(self._wait_child, running.task_id, running.run, popen)

    def _wait_child(self, task_id: str, run: int, popen: Child) -> None:
        code = None
        try:
            code = popen.wait()
            self.processes.forget(popen.pid)
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

    def follow(self, running: Running, now: datetime, ended: bool = False) -> bool:
        """Record one bounded step of what the task wrote; True when more is left to read.
        `ended`: its run is over (a rollout not found yet is looked for once more)."""
        task_dir = self.tasks.dir(running.task_id)
        moved = follower.advance(task_dir, running.status, self.settings.prices, now, ended)
        if moved is None:
            return False
        status = moved.status
        if moved.active:
            status = status.with_(daemon=replace(status.daemon, active_at=now.timestamp()))
        self.book.append(running, now, moved.lines, status)  # may fail: then it is read again
        if moved.active:
            running.moved(self.clock.monotonic())
        self.behind = self.behind or moved.more
        return moved.more

    def check_deadlines(self, running: Running, now: datetime, unread: bool = False) -> None:
        """Its budget, the end of its backoff, a stall; and when to look again (`running.due`).
        `unread`: it wrote since it was last read (the loop reads busy tasks only now and then)."""
        if self.running.get(running.task_id) is not running:
            return  # it ended this tick
        # Until a phase below says when. A run that is finishing is tended every round (its end
        # may wait for the rest of its output, or for a full disk); the other phases have no deadline.
        running.due = DUE_NOW if isinstance(running.phase, Finishing) else float("inf")
        if self._over_budget(running, now):
            return
        mono, phase = self.clock.monotonic(), running.phase
        if isinstance(phase, Waiting):
            # The old tree must be all gone first: its killer would take the new run for a straggler.
            if mono >= phase.until and not running.being_killed:
                self._resume(running, now)
            else:
                running.due = mono + KILLED_AGAIN if mono >= phase.until else phase.until
                self._due_by_budget(running, mono, now)
            return
        if not isinstance(phase, Watched):
            return  # (what was seen of its tree is forgotten with its run: busy.FORGOTTEN)
        limits = rules.timeouts_of(running.status, self.settings.health)
        if unread and mono - running.active < limits[0]:
            # Its next read says whether it moved (and changes its record: then it is due again);
            # its tree need not be read meanwhile.
            running.due = running.active + limits[0]
            self._due_by_budget(running, mono, now)
            return
        task_dir = partial(self.tasks.dir, running.task_id)  # made only when its tree is read
        at = (mono, now.timestamp())
        quiet, news = self.busy.quiet(running, task_dir, at, limits, self.settings.health)
        if news is not None:  # its tree seen working: kept in its record, for `codexd health` too
            self.book.append(running, now, *news)
        if rules.is_stalled(idle := mono - running.active, limits[0], quiet, limits[1]):
            self._stall(running, now, idle, quiet)
            return
        # Next: its stall deadline, or while it is silent twice per sampling interval of its
        # tree (busy work, and the busy timeout, are seen only by those readings).
        every = busy.interval(limits[0])
        sample = mono + every / 2 if idle >= every else running.active + every
        running.due = min(running.active + limits[0], sample)
        self._due_by_budget(running, mono, now)

    def _due_by_budget(self, running: Running, mono: float, now: datetime) -> None:
        """No later than its timeout ends (its token budget is judged when its record changes)."""
        ends = rules.timeout_ends(running.status, self.settings.health)
        if ends is not None:
            running.due = min(running.due, mono + ends - now.timestamp())

    def _over_budget(self, running: Running, now: datetime) -> bool:
        """A task over its timeout or token budget is stopped, whole tree, and ends failed."""
        phase = running.phase
        error = rules.over_budget(running.status, now, self.settings.health)
        if error is None or not isinstance(phase, Watched | Waiting):
            return False
        log.warning("task.over_budget", task_id=running.task_id, error=error)
        if isinstance(phase, Waiting):  # between runs: nothing to stop
            running.ends(Ending(TaskState.FAILED, f"Failed: {error}", error))
            self.finish_exit(running, now)
            return True
        self.book.append(running, now, [f"Stopping: {error}; ending the task's whole process tree"])
        running.stop(Why.GIVE_UP, rules.Next("fail", f"Failed: {error}", error=error))
        if running.has_process:
            self.kill(running)
        return True

    def _stall(self, running: Running, now: datetime, idle: float, quiet: float) -> None:
        status = running.status.with_(stalls=running.status.stalls + 1)
        timeout, limit = rules.timeouts_of(status, self.settings.health)
        log.warning(
            "task.stalled",
            task_id=status.task_id,
            idle=round(idle, 3),
            late_by=round(rules.late_by(idle, quiet, timeout, limit), 3),  # noticed this long after
            stalls=status.stalls,
        )
        line = rules.stall_line(idle, quiet, timeout, limit)
        self.book.change(status, TaskState.STALLED, now, line + "; stopping its process tree")
        self.restart_stalled(running)

    def restart_stalled(self, running: Running) -> None:
        """Plan what follows a stall (a restart, or giving up), and end the tree if it runs."""
        status = running.status
        idle = self.clock.monotonic() - running.active
        plan = rules.after_stall(
            status.stalls, idle, rules.stall_timeout_of(status, self.settings.health), self.settings.health
        )
        running.stop(Why.RESTART if plan.action == "restart" else Why.GIVE_UP, plan)
        if running.has_process:
            self.kill(running)

    # -- stop and restart by hand --------------------------------------------------------

    def cancel(self, running: Running, now: datetime) -> None:
        if running.why == Why.CANCEL:
            return
        running.stop(Why.CANCEL)
        if not running.has_process:  # between runs: nothing to wait for
            self.exited(running, None, now)
            return
        self.book.append(running, now, ["Stopping: the task's whole process tree is being ended"])
        self.kill(running)

    def restart_by_hand(self, running: Running, now: datetime) -> None:
        if running.why in (Why.CANCEL, Why.RESTART_NOW):
            return
        if not running.has_process:  # waiting out a backoff: skip the rest, and count a restart
            owed = Resume(now.timestamp(), ResumeKind.RESTART, BY_HAND)
            self.book.amend(running, running.status.with_(daemon=replace(running.status.daemon, resume=owed)))
            running.wait(self.clock.monotonic())
            return
        line = "Restart requested: stopping its process tree to resume the session"
        self.book.append(running, now, [line], incident=IncidentKind.RESTART_ASKED)
        running.stop(Why.RESTART_NOW)
        self.kill(running)

    # -- the end of a run ---------------------------------------------------------------

    def exited(self, running: Running, code: int | None, now: datetime) -> None:
        running.exited(code)  # until its end is handled: a full disk, a backlog (or a bug) means later
        folder = cgroup_of(running.status, self.tasks.dir(running.task_id))
        if folder is not None:
            containment.remove_if_empty(folder)  # empty cgroups must not pile up between runs
        if self.follow(running, now, ended=True):
            return  # the rest is read in the next ticks' steps (finish_exit), then the run is judged
        self._after_exit(running, code, now)

    def finish_exit(self, running: Running, now: datetime) -> None:
        """An exit or an end that could not be written (a full disk) is, when it can be."""
        phase = running.phase
        if isinstance(phase, Finishing) and phase.ending is not None:
            self._end_run(running, phase.code, now, phase.ending)
        elif isinstance(phase, Finishing):
            self.exited(running, phase.code, now)

    def _after_exit(self, running: Running, code: int | None, now: datetime) -> None:
        phase = running.phase
        stopped = phase.stopped if isinstance(phase, Finishing) else None
        match stopped:
            case Stopping(Why.CANCEL):
                line = "Cancelled: the task's processes were stopped"
                self._end_run(running, code, now, Ending(TaskState.CANCELLED, line))
            case Stopping(Why.GIVE_UP, stall) if stall is not None:
                self._end_run(running, code, now, Ending(TaskState.FAILED, stall.line, stall.error))
            case Stopping(Why.RESTART, stall) if stall is not None:
                reason = "it made no progress for too long, so its processes were stopped"
                self._owe(running, now, Resume(0, ResumeKind.RESTART, reason), stall.delay, stall.line)
            case Stopping(Why.RESTART_NOW):
                self._owe(running, now, Resume(0, ResumeKind.RESTART, BY_HAND), 0.0, "Restarting now")
            case _:
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
            retry = Resume(0, ResumeKind.RETRY, f"the model endpoint failed ({error})")
            self._owe(running, now, retry, next_step.delay, next_step.line, counted)
        elif next_step.action == "wait":  # the account's usage limit: no retry spent, the hold says how long
            wait = self.limit.wait(status, error, now, self.settings.health.usage_limit_wait)
            self._owe(running, now, wait.resume, wait.delay, wait.line, status.with_(waiting=wait.waiting))
        elif next_step.action == "fresh":
            counted = status.with_(thread_id=None, daemon=replace(status.daemon, afresh=afresh + 1))
            self._owe(running, now, Resume(0, ResumeKind.FRESH, ""), next_step.delay, next_step.line, counted)
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
        running.wait(self.clock.monotonic() + delay)
        log.info("task.resume_owed", task_id=running.task_id, kind=resume.kind, delay=delay)

    def _end_run(self, running: Running, code: int | None, now: datetime, ending: Ending) -> None:
        status = running.status
        task_dir = self.tasks.dir(status.task_id)
        results, counts, progress = tasktypes.build_results(
            self.types.get(status.type, tasktypes.BUILTIN["generic"]),
            store.read_text(task_dir / store.LAST_MESSAGE),
            status.progress,
            completed=ending.state == TaskState.COMPLETED,
        )
        if "parse_error" in results:  # it ended, but without the results its type asks for
            ending = Ending(TaskState.FAILED, f"Failed: {results['parse_error']}", results["parse_error"])
        if ending.error:
            results["error"] = ending.error
        cursor = replace(status.daemon, resume=None)
        done = status.with_(
            results=counts, progress=progress, exit_code=code, error=ending.error, daemon=cursor
        )
        self.book.end(done, ending.state, now, ending.line, results)  # a full disk: tried again
        # A task that ended leaves nothing running: a server the agent started goes too.
        cgroup = cgroup_of(status, task_dir)
        self._enders = {task_id: t for task_id, t in self._enders.items() if t.is_alive()}
        grace = self.settings.daemon.stop_grace
        self._enders[status.task_id] = self.in_thread(self.processes.end_tree, None, task_dir, grace, cgroup)

    def ending(self, task_id: str) -> bool:
        """The tree of the task's last run is still being ended: a new run (`codexd retry`)
        must wait, or the killer would take it for a straggler."""
        ender = self._enders.get(task_id)
        return ender is not None and ender.is_alive()

    # -- its process tree ---------------------------------------------------------------

    def check_adopted(self, running: Running) -> None:
        """An adopted process the health check saw gone: its waiter should have said so."""
        status = running.status
        if self.processes.find(status.pid, status.daemon.pid_create_time, status.task_id) is None:
            self.post(Exited(status.task_id, running.run, None))

    def kill(self, running: Running) -> None:
        if running.being_killed:
            return  # one killer per tree: a second would take the next run for a straggler
        task_dir, grace = self.tasks.dir(running.task_id), self.settings.daemon.stop_grace
        cgroup = cgroup_of(running.status, task_dir)
        running.killing(self.in_thread(self.processes.end_tree, running.root, task_dir, grace, cgroup))

    def in_thread(self, target: Callable[..., Any], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"codexd-{target.__name__}")
        thread.start()
        return thread


def run_stderr(path: Path, start: int) -> list[str]:
    """The last lines the current run wrote to stderr.log (which began at `start`)."""
    data = tailing.tail_bytes(path, tailing.REASON_BYTES, start=start)
    return data.decode("utf-8", "replace").splitlines()[-outcome.STDERR_LINES :]
