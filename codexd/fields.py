"""Typed reads of fields from JSON written by someone else, with defaults instead of errors.

A field of the wrong type (a string where a number goes, a list where an object goes),
a non-finite number or one out of range reads as the default, and `Fields` remembers its
name so that the caller can say once what it ignored.
"""

from __future__ import annotations

import math
import sys
from typing import Any, TypeVar

T = TypeVar("T")
BIG = 2**53  # larger counts and offsets are not real; JSON readers elsewhere lose precision past it
_warned: set[tuple[str, str]] = set()


def text(found: object, default: str | None = None) -> str | None:
    return found if isinstance(found, str) else default


def integer(found: object, default: int | None = 0, low: int = 0, high: int = BIG) -> int | None:
    """A whole number in [low, high]; a finite float with no fraction counts (JSON has no int type)."""
    if isinstance(found, bool) or not isinstance(found, int | float):
        return default
    if isinstance(found, float) and not (math.isfinite(found) and found.is_integer()):
        return default
    return min(max(int(found), low), high)


def number(found: object, default: float | None = None, low: float = 0.0, high: float = 1e15) -> float | None:
    """A finite number in [low, high] (epoch seconds, timeouts)."""
    if isinstance(found, bool) or not isinstance(found, int | float):
        return default
    try:
        value = float(found)
    except OverflowError:  # an int too big for a float
        return default
    return min(max(value, low), high) if math.isfinite(value) else default


class Fields:
    """The fields of one JSON object; names of those of the wrong type are kept in `bad`."""

    def __init__(self, data: object, prefix: str = "", bad: list[str] | None = None) -> None:
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.prefix = prefix
        self.bad = [] if bad is None else bad

    def ignore(self, key: str, default: T) -> T:
        """`default`, noting `key` as ill-typed when it held anything."""
        if self.data.get(key) is not None:
            self.bad.append(self.prefix + key)
        return default

    # The first test in each getter is the field as the daemon writes it: `list` reads thousands.
    def text(self, key: str, default: str | None = None) -> str | None:
        found = self.data.get(key)
        if found is None or type(found) is str:
            return found if found is not None else default
        return self.ignore(key, default)

    def integer(self, key: str, default: int | None = 0, low: int = 0, high: int = BIG) -> int | None:
        found = self.data.get(key)
        if found is None or (type(found) is int and low <= found <= high):
            return found if found is not None else default
        found = integer(found, None, low, high)
        return found if found is not None else self.ignore(key, default)

    def number(
        self, key: str, default: float | None = None, low: float = 0.0, high: float = 1e15
    ) -> float | None:
        found = self.data.get(key)
        if found is None:
            return default
        found = number(found, None, low, high)
        return found if found is not None else self.ignore(key, default)

    def items(self, key: str) -> list[Any]:
        found = self.data.get(key)
        return found if isinstance(found, list) else self.ignore(key, [])

    def mapping(self, key: str) -> dict[str, Any]:
        found = self.data.get(key)
        return found if isinstance(found, dict) else self.ignore(key, {})

    def within(self, key: str) -> Fields:
        """The object under `key`, its bad fields named `key.field`."""
        return Fields(self.mapping(key), f"{self.prefix}{key}.", self.bad)


def warn(event: str, task_id: str | None, bad: list[str]) -> None:
    """Say once per process, task and field what was ignored (a status read in a loop says it once)."""
    new = [name for name in bad if (task_id or "", name) not in _warned]
    if new:
        _warned.update((task_id or "", name) for name in new)
        _say(event, f"{task_id}: {_IGNORED}: {', '.join(new)}", task_id=task_id, fields=new)


def unreadable(task_id: str, problem: str) -> None:
    """A task file left out, said once per process."""
    if (task_id, problem) not in _warned:
        _warned.add((task_id, problem))
        _say("task.unreadable", f"{problem}; left out", task_id=task_id, error=problem)


_IGNORED = "status.json fields of the wrong type, read as their defaults"


def _say(event: str, line: str, **details: object) -> None:
    """In the daemon's log; from a command (whose stdout is its output), one line on stderr."""
    structlog = sys.modules.get("structlog")  # the daemon's; a quick command does not load it
    if structlog is not None and structlog.is_configured():
        structlog.get_logger().warning(event, **details)
    else:
        print(f"codexd: {line}", file=sys.stderr)
