"""The daemon's one boundary: nothing that goes wrong for one task stops the loop.

Every step of the loop runs inside `Boundary.guard`. An expected error (a full disk) is
logged and the step is tried again next tick; the same one again is logged once a minute,
not ten times a second. Anything else is a bug: logged with its traceback and tried again,
and if it keeps happening for the same task the task ends `failed` ("internal error"),
never the daemon, at start-up or later. KeyboardInterrupt and SystemExit are not caught.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog

from codexd.daemon import checkup
from codexd.daemon.processes import cgroup_of
from codexd.daemon.rules import STRIKES
from codexd.daemon.running import Running
from codexd.daemon.runs import Runs
from codexd.errors import CodexdError
from codexd.tasks import store
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState

log = structlog.get_logger()
REPEAT_QUIET = 60.0  # seconds before the same error is logged again
# What the loop was doing for a task, for the error of a task that a bug ended.
DOING = {
    "follow": "following its events",
    "exited": "handling the end of its run",
    "finish_exit": "handling the end of its run",
    "check_deadlines": "checking its deadlines",
    "launch": "starting it",
    "recover_one": "taking it up at start-up",
    "take_one": "handling a stop or restart request",
    "act_on_finding": "acting on a health check",
    "note": "writing its log",
}
ONE_TIME = frozenset({"launch", "recover_one"})  # steps not tried again: a bug there ends the task at once


class Boundary:
    def __init__(self, runs: Runs):
        self.runs = runs
        self.book = runs.book
        self.clock = runs.clock
        self._said: dict[str, float] = {}  # error -> when it was last logged
        self._strikes: dict[tuple[str | None, str], int] = {}  # (task, action) -> unexpected errors in a row

    def guard(self, action: Callable[..., object], *args: Any) -> None:
        """`action(*args)`, whatever goes wrong (see the module's comment)."""
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
                self._strikes.pop((task_of(args), action.__name__), None)

    def _unexpected(self, action: str, args: tuple[Any, ...], exc: Exception) -> None:
        """A bug while handling a task: the step is tried again (next tick, next pass) up to
        STRIKES times in a row; then, or at once for a one-time step, the task ends `failed`."""
        task_id = task_of(args)
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
        running = self.book.running.get(task_id)
        status = running.status if running else self.book.queued_status(task_id) or hint
        if status is None or status.is_terminal:
            return  # nothing the daemon runs (a note for an ended task, say)
        self.end_tree(running, task_id)
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
            self.book.drop(task_id)
        log.error("task.given_up", task_id=task_id, error=error)

    def _past_input(self, status: TaskStatus) -> TaskStatus:
        """The cursor moved past everything written so far: a new daemon does not read it again."""
        task_dir = self.book.tasks.dir(status.task_id)
        events, reports = store.size_of(task_dir / store.EVENTS), store.size_of(task_dir / store.REPORTS)
        stderr = store.size_of(task_dir / store.STDERR)
        cursor = replace(status.daemon, events=events, reports=reports, stderr=stderr, resume=None)
        return status.with_(daemon=cursor)

    def end_tree(self, running: Running | None, task_id: str) -> None:
        """End the task's process tree on a killer thread, whatever state it is in."""
        root, cgroup, task_dir = None, None, self.book.tasks.dir(task_id)
        with contextlib.suppress(Exception):
            root = running.root if running else None
            cgroup = cgroup_of(running.status, task_dir) if running else None
        grace = self.runs.settings.daemon.stop_grace
        self.runs.in_thread(self.runs.processes.end_tree, root, task_dir, grace, cgroup)


def task_of(args: tuple[Any, ...]) -> str | None:
    """Which task a guarded step is about, from its first argument."""
    first = args[0] if args else None
    if isinstance(first, Running | TaskStatus):
        return first.task_id
    if isinstance(first, checkup.Finding):
        return first.task_id
    return first if isinstance(first, str) else None
