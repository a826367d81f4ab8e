"""The periodic health check as an APScheduler 3 job.

Run at start-up and every `health.interval` seconds after. A run that comes late (the
laptop slept) still runs, once: the grace time is the interval and late runs coalesce.
The job only looks (see `checkup`); what it finds goes back to the daemon's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

JOB_ID = "health"


class HealthSchedule:
    def __init__(self, job: Callable[[], None], interval: float):
        self._job = job
        self._interval = interval
        self._scheduler = BackgroundScheduler(timezone=UTC)

    @property
    def alive(self) -> bool:
        return bool(self._scheduler.running) and self._scheduler.get_job(JOB_ID) is not None

    def restart(self) -> None:
        """A new scheduler for one that died (or lost its job)."""
        self.stop()
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self.start()

    def start(self) -> None:
        self._scheduler.add_job(
            self._job,
            "interval",
            seconds=self._interval,
            id=JOB_ID,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, round(self._interval)),
        )
        self._scheduler.start()

    def set_interval(self, interval: float) -> None:
        if interval != self._interval:
            self._interval = interval
            self._scheduler.reschedule_job(JOB_ID, trigger="interval", seconds=interval)
            self._scheduler.modify_job(JOB_ID, misfire_grace_time=max(1, round(interval)))

    def stop(self) -> None:
        # Each step of a check has its own time limit; shutting down need not wait for one.
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
