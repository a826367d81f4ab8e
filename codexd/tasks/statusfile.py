"""status.json as the daemon writes it, told apart with no import but a C scanner.

The quick commands (`status --json`, `logs -n`, `list --json`) print status files as
written when they pass this check; anything else goes to the full command line. Kept
apart and small: every module a quick command imports costs it time.
"""

from __future__ import annotations

HEAD = b'{\n  "task_id": "'


STATES = frozenset({"queued", "in_progress", "stalled", "completed", "failed", "cancelled"})  # TaskState's


class _Plain:
    """What the C JSON scanner asks of its decoder: plain JSON, nothing hooked."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int, parse_constant = float, int, float


_SCANNER: list[object] = []  # made once, on first use


def _scan(text: str) -> tuple[object, int]:
    if not _SCANNER:
        from _json import make_scanner

        _SCANNER.append(make_scanner(_Plain()))  # type: ignore[arg-type]  # duck-typed
    found, end = _SCANNER[0](text, 0)  # type: ignore[operator]
    return found, end


def _parsed(data: bytes) -> object:
    """The JSON value in `data`, or None: the C scanner alone, as `import json` costs more
    than the rest of a quick command. One scanner serves every file."""
    try:
        text = data.decode()
        found, end = _scan(text)
    except (ValueError, StopIteration, RecursionError):
        return None
    return found if not text[end:].strip() else None


def in_daemon_format(data: bytes, task_id: str) -> bool:
    """status.json as the daemon writes it: its layout, JSON, and the task's identity.

    Anything else goes to the full command line, which reads it or says what is wrong."""
    if not (data.startswith(HEAD) and data.endswith(b"\n}\n")):
        return False
    found = _parsed(data)
    return (
        isinstance(found, dict)
        and found.get("task_id") == task_id
        and found.get("status") in STATES
        and isinstance(found.get("created_at"), str)
    )
