"""Time in one place: aware UTC, ISO-8601 with `Z`, and a clock tests can replace.

The daemon reads two clocks. Wall time stamps what users see. Deadlines (stalls, backoff)
run on the monotonic clock, which stops while a laptop sleeps on Linux and macOS. So a
task is never called stalled for the hour the lid was closed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to: stall and backoff tests run in milliseconds."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2025, 10, 31, 12, 0, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def sleep_machine(self, seconds: float) -> None:
        """A suspended laptop: wall time moves on, the monotonic clock does not."""
        self._now += timedelta(seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def duration(seconds: float) -> str:
    """`905` -> `15m05s`: durations as people read them."""
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 48:
        return f"{hours // 24}d{hours % 24:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
