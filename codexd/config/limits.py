"""The largest numbers codexd takes, in one place (settings, front matter, the command line).

A duration is finite and at most a year: timers (threading's TIMEOUT_MAX), the scheduler
and date arithmetic (year 9999) cannot overflow, and JSON has no `Infinity`.
"""

from __future__ import annotations

import math

MAX_SECONDS = 365 * 86400
MAX_PARALLEL = 1000  # tasks at once: the daemon is measured to 500 (bench); a typo like 100000 is refused
MAX_TRIES = 1000  # restarts, retries


def is_duration(value: object) -> bool:
    """A number of seconds codexd can wait: finite, from 0 to MAX_SECONDS (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and 0 <= value <= MAX_SECONDS
