"""The shared queue's thread: procrastinate's worker and the queue's upkeep, on an event loop
of their own, so that the daemon loop never waits on the database.

The worker takes jobs up to the daemon's `max_parallel`; each job hands its task to the
daemon (`hand`, which posts to the inbox) and is held until the task has ended. The upkeep
defers the jobs of tasks the daemon accepted (again and again while the database is away:
nothing accepted is lost) and puts back the jobs of daemons gone silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from procrastinate import exceptions
from procrastinate.job_context import JobContext

from codexd.errors import CodexdError
from codexd.queue import sessions, shared
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState
from codexd.tasks.store import TaskStore

log = structlog.get_logger()
WATCH = 1.0  # seconds between looks at a held task's status.json
RESTART = 2.0  # seconds before a session that could not start (the database away) is tried again
CANCEL_WAIT = 2.0  # seconds the daemon loop waits for the database to cancel a waiting job


class QueueThread:
    def __init__(
        self,
        url: str,
        name: str,
        slots: int,
        takeover_after: float,
        tasks: TaskStore,
        hand: Callable[[str], None],
    ) -> None:
        self.url = url
        self.name = name
        self.slots = slots
        self.takeover_after = takeover_after
        self.tasks = tasks
        self.hand = hand
        self._ended: dict[str, asyncio.Event] = {}  # the held jobs' tasks: set when one ends
        self._pending: dict[str, tuple[int, str]] = {}  # task id → priority, lock: not yet in the queue
        self._guard = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="codexd-queue", daemon=True)
        self.app = shared.make_app(url, self._hold)

    # -- what the daemon loop calls ------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, task_id: str, priority: int, lock: str) -> None:
        """The task goes into the queue as soon as the database answers."""
        with self._guard:
            self._pending[task_id] = (priority, lock)
        self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self, timeout: float) -> None:
        """Jobs held go back to the queue (another daemon resumes their tasks)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def cancel_waiting(self, task_id: str) -> bool:
        """The task's job taken out of the queue before any daemon took it (False: it is held,
        or not queued yet, or the database did not answer in time)."""
        with self._guard:
            if self._pending.pop(task_id, None) is not None:
                return True
        if not self.alive:
            return False
        future = asyncio.run_coroutine_threadsafe(shared.cancel_waiting(self.app, task_id), self._loop)
        try:
            return future.result(CANCEL_WAIT)
        except (TimeoutError, exceptions.ProcrastinateException) as exc:  # the request waits
            future.cancel()
            log.warning("queue.cancel_failed", task_id=task_id, error=str(exc) or "no answer in time")
            return False

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def pending(self) -> list[str]:
        with self._guard:
            return sorted(self._pending)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        while not self._stop.is_set():
            try:
                await self._session()
            except Exception as exc:  # the database away at start, or a bug: logged, tried again
                log.error("queue.unavailable", error=str(exc), fix="check queue.url and the database server")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), RESTART)

    async def _session(self) -> None:
        await asyncio.to_thread(shared.ensure_schema, self.url)
        async with self.app.open_async():
            log.info("queue.connected", name=self.name, slots=self.slots)
            worker = asyncio.create_task(self.app.run_worker_async(**self._worker_options()))
            upkeep = asyncio.create_task(self._upkeep())
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({worker, upkeep, stop}, return_when=asyncio.FIRST_COMPLETED)
            for task in (worker, upkeep, stop):
                task.cancel()
            await asyncio.gather(worker, upkeep, stop, return_exceptions=True)
            failed = [t.exception() for t in done if t is not stop and not t.cancelled() and t.exception()]
            if failed:
                raise failed[0]  # type: ignore[misc]

    def _worker_options(self) -> dict[str, Any]:
        beat = max(0.2, min(10.0, self.takeover_after / 4))
        return {
            "name": f"codexd:{self.name}",
            "queues": [shared.QUEUE],
            "concurrency": self.slots,
            "install_signal_handlers": False,
            "shutdown_graceful_timeout": 0,  # held jobs go back at once: their tasks resume elsewhere
            "update_heartbeat_interval": beat,
            "stalled_worker_timeout": self.takeover_after,
            "fetch_job_polling_interval": beat,
            "delete_jobs": "successful",
        }

    async def _hold(self, context: JobContext, task_id: str) -> None:
        """The job of one task: handed to the daemon, held until the task has ended."""
        first = self._status(task_id)
        if first is not None and first.status == TaskState.QUEUED and self._before_it(first):
            raise shared.NotYet(task_id)
        log.info("queue.job_taken", task_id=task_id, job=context.job.id)
        ended = self._ended.setdefault(task_id, asyncio.Event())
        self.hand(task_id)
        try:
            # The daemon says when the task ends (a retry may queue it again within a look);
            # its status.json is looked at too, for an end no daemon recorded (it was removed).
            while (status := self._status(task_id)) is not None and not status.is_terminal:
                sessions.keep(self.tasks, status)  # so that another machine can resume the session
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), WATCH)
                if ended.is_set():
                    return
        finally:
            self._ended.pop(task_id, None)

    def task_ended(self, task_id: str) -> None:
        """The daemon recorded the task's end: its job is let go (from the daemon's loop)."""

        def let_go() -> None:
            event = self._ended.get(task_id)
            if event is not None:
                event.set()

        if self.alive:
            self._loop.call_soon_threadsafe(let_go)

    def _before_it(self, status: TaskStatus) -> bool:
        """Does a task it runs after still wait or run? (One that failed or is gone: the daemon
        cancels this one, so it is handed over.)"""
        for other in status.after:
            found = self._status(other)
            if found is not None and not found.is_terminal:
                return True
        return False

    def _status(self, task_id: str) -> TaskStatus | None:
        try:
            return self.tasks.read_status(task_id)
        except CodexdError as exc:  # removed, or unreadable: nothing left to run
            log.warning("queue.task_unreadable", task_id=task_id, error=str(exc))
            return None

    async def _upkeep(self) -> None:
        every = max(0.2, min(5.0, self.takeover_after / 4))
        # After an outage every worker's heartbeat is as old as the outage: no one's silence
        # means anything until each has had `takeover_after` to beat again. A round that
        # failed, or took long (its queries waited for the database), says there was one.
        answering_since = time.monotonic()
        while True:
            self._wake.clear()
            began = time.monotonic()
            try:
                await self._defer_pending()
                if began - answering_since >= self.takeover_after:
                    await self._take_over()
            except exceptions.ConnectorException as exc:  # the database away: the worker waits too
                log.warning("queue.upkeep_failed", error=str(exc))
                answering_since = time.monotonic()
            if time.monotonic() - began > every:
                answering_since = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), every)

    async def _take_over(self) -> None:
        for task_id in await shared.take_over_stalled(self.app, self.takeover_after):
            log.warning("queue.taken_over", task_id=task_id, silent_for=self.takeover_after)

    async def _defer_pending(self) -> None:
        with self._guard:
            pending = dict(self._pending)
        for task_id, (priority, lock) in pending.items():
            await shared.defer(self.app, task_id, priority, lock)
            with self._guard:
                self._pending.pop(task_id, None)
            log.info("queue.submitted", task_id=task_id, priority=priority)
