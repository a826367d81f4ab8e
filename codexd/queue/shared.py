"""The shared queue on PostgreSQL: procrastinate's App, its one job, and what it asks the database.

A job names one task (its folder already in the shared tasks_dir). The worker that fetches
it hands the task to its daemon and holds the job until the task has ended, so the job's
worker heartbeat says the task's machine is alive: a job whose worker went silent for
`queue.takeover_after` is put back, and another daemon resumes the task. `queueing_lock` =
the task id: it waits in the queue once. `lock` = the task's folder (tasks without worktrees
of their own in one folder never run at once, on any machine: `share_folders` lifts it) or
else the task id: two jobs of one task never run at once either way. Imported only when
`queue.url` is set (the `codexd[queue]` extra).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import procrastinate
import psycopg
import structlog
from procrastinate import exceptions, jobs, manager, retry
from procrastinate.job_context import JobContext
from procrastinate.schema import SchemaManager

log = structlog.get_logger()
QUEUE = "codexd"
TASK = "codexd.run_task"
OUTAGE_RETRY = 1.0  # seconds between tries while the database does not answer
SCHEMA_LOCK = 0x636F646578640001  # an advisory lock: two daemons never create the schema together
T = TypeVar("T")


class PatientJobManager(manager.JobManager):
    """A worker that outlives a database outage: a missed heartbeat is logged, a fetch finds
    no job, and a job's end waits for the database. (procrastinate's own worker stops at the
    first failed query, which would let go of every task it holds.)"""

    async def update_heartbeat(self, worker_id: int) -> None:
        try:
            await super().update_heartbeat(worker_id)
        except exceptions.ConnectorException as exc:
            log.warning("queue.heartbeat_missed", error=str(exc))

    async def fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> jobs.Job | None:
        try:
            return await super().fetch_job(queues, worker_id)
        except exceptions.ConnectorException as exc:
            log.warning("queue.fetch_failed", error=str(exc))
            return None

    async def finish_job(self, job: jobs.Job, status: jobs.Status, delete_job: bool) -> None:
        await patiently(lambda: super(PatientJobManager, self).finish_job(job, status, delete_job))

    async def retry_job(self, job: jobs.Job, *args: Any, **kwargs: Any) -> None:
        await patiently(lambda: super(PatientJobManager, self).retry_job(job, *args, **kwargs))


async def patiently(call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`call()` until the database answers it."""
    while True:
        try:
            return await call()
        except exceptions.ConnectorException as exc:
            if not isinstance(exc.__cause__, psycopg.OperationalError):
                raise  # the database answered, and refused it: asking again changes nothing
            log.warning("queue.waiting_for_database", error=str(exc))
            await asyncio.sleep(OUTAGE_RETRY)


class NotYet(Exception):
    """The task runs after others that have not ended: its job goes back, and is taken again
    a little later (holding it would hold a slot that those others may need)."""


NOT_YET_WAIT = 2  # seconds


class BackOnShutdown(retry.BaseRetryStrategy):
    """A job whose worker stops (its daemon shuts down) goes back to the queue at once; one
    whose task must wait for others goes back for a while."""

    def get_retry_decision(self, *, exception: BaseException, job: jobs.Job) -> retry.RetryDecision | None:
        if isinstance(exception, asyncio.CancelledError):
            return retry.RetryDecision(retry_in={"seconds": 0})
        if isinstance(exception, NotYet):
            return retry.RetryDecision(retry_in={"seconds": NOT_YET_WAIT})
        return None


Hold = Callable[[JobContext, str], Coroutine[Any, Any, None]]


def make_app(url: str, hold: Hold) -> procrastinate.App:
    """The App on `url`, its one task running `hold(context, task_id)`."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    app.job_manager = PatientJobManager(connector=app.connector)
    app.task(name=TASK, queue=QUEUE, pass_context=True, retry=BackOnShutdown())(hold)
    return app


def ensure_schema(url: str) -> None:
    """procrastinate's tables, created by the first daemon that finds none."""
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        found = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if not (found and found[0]):
            conn.execute(SchemaManager.get_schema())
            log.info("queue.schema_created")
        conn.commit()


async def defer(app: procrastinate.App, task_id: str, priority: int, lock: str) -> None:
    """A job for the task, unless one waits in the queue already. A second job while one is
    held (a task handed over, not started yet, when a daemon starts) is harmless: it waits
    on the same `lock`, and is let go at once when its task has ended."""
    configured = app.configure_task(TASK, lock=lock, queueing_lock=task_id, priority=priority)
    try:
        await configured.defer_async(task_id=task_id)
    except exceptions.AlreadyEnqueued:
        return  # another daemon queued it first


async def take_over_stalled(app: procrastinate.App, silent: float) -> list[str]:
    """Jobs whose worker sent no heartbeat for `silent` seconds, put back in the queue: the ids
    of their tasks."""
    taken = []
    for job in await app.job_manager.get_stalled_jobs(
        queue=QUEUE, task_name=TASK, seconds_since_heartbeat=silent
    ):
        try:
            await app.job_manager.retry_job(job)
        except exceptions.ConnectorException as exc:  # another daemon put it back first
            log.info("queue.take_over_skipped", job=job.id, error=str(exc))
            continue
        taken.append(str(job.task_kwargs.get("task_id")))
    return taken


async def cancel_waiting(app: procrastinate.App, task_id: str) -> bool:
    """The task's job cancelled while it still waits in the queue: True when no daemon will
    ever be handed it (one that holds it already carries out the stop itself)."""
    for job in await app.job_manager.list_jobs_async(task=TASK, queueing_lock=task_id, status="todo"):
        if job.id is not None and await app.job_manager.cancel_job_by_id_async(job.id):
            return True
    return False
