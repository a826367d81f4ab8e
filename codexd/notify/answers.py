"""When an endpoint asks to be tried later: the `Retry-After` of a 429 or 503 answer.

apprise's results keep no HTTP headers, and its plugins post through `requests`. So a
response hook is added to the sessions `requests` makes (`install`, once per process),
and it records `Retry-After` for the delivery in whose context it runs: `listening()`
sets a box in a context variable, which apprise's worker threads inherit (it submits
work with a copy of the caller's context). Outside `listening()` the hook does nothing.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

THROTTLED = frozenset({429, 503})  # Too Many Requests, Service Unavailable
_box: ContextVar[list[str] | None] = ContextVar("codexd_retry_after", default=None)
_installed: list[bool] = []
_DEFAULT_HOOKS = "default_hooks"  # what each new `requests.Session` takes its hooks from


def _record(response: Any, *args: Any, **kwargs: Any) -> None:
    box = _box.get()
    if box is not None and response.status_code in THROTTLED:
        asked = response.headers.get("Retry-After")
        if asked:
            box.append(str(asked).strip()[:64])


def install() -> None:
    """Once per process (the caller holds a lock): every `requests` session gets the hook."""
    if _installed:
        return
    from requests import sessions

    made = getattr(sessions, _DEFAULT_HOOKS)

    def hooks() -> Any:
        found = made()
        found.setdefault("response", []).append(_record)
        return found

    setattr(sessions, _DEFAULT_HOOKS, hooks)
    _installed.append(True)


@contextlib.contextmanager
def listening() -> Iterator[list[str]]:
    """The `Retry-After` values answered while inside, last one last."""
    box: list[str] = []
    token = _box.set(box)
    try:
        yield box
    finally:
        _box.reset(token)


def seconds(asked: str | None, now: datetime) -> float | None:
    """The wait a `Retry-After` asks for: delay-seconds or an HTTP date; None if it is neither."""
    if not asked:
        return None
    with contextlib.suppress(ValueError):
        wait = float(asked)
        return None if math.isnan(wait) else max(0.0, wait)
    try:
        when = parsedate_to_datetime(asked)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
