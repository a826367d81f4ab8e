"""`codexd list --json` for thousands of tasks, with `os` alone.

Every status.json is printed as the daemon wrote it, re-indented one level, newest first:
byte for byte what `json.dumps(tasks, indent=2)` prints, without parsing or encoding
10,000 records. A file the daemon did not format is left to the full command line.
"""

from __future__ import annotations

import os

from codexd.dirs import is_task_id

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


def named_status_files(root: str) -> list[tuple[str, bytes]]:
    """Each task folder's name with the bytes of its status.json."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if not is_task_id(name):
            continue
        try:
            with open(os.path.join(root, name, "status.json"), "rb") as f:
                found.append((name, f.read()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:  # unreadable (permissions, a folder by that name): the full reader says so
            found.append((name, b""))
    return found


def _field(data: bytes, key: bytes, end: bytes) -> bytes:
    start = data.find(key)
    if start < 0:
        return b""
    start += len(key)
    return data[start : data.find(end, start)]


def newest_first(data: bytes) -> tuple[bytes, int]:
    """The order of `codexd list`: created_at, then the order the daemon accepted them in."""
    accepted = _field(data, b'"accepted_ns": ', b"\n").rstrip(b",")
    return _field(data, b'"created_at": "', b'"'), int(accepted) if accepted.isdigit() else 0


def json_array(files: list[tuple[str, bytes]]) -> bytes | None:
    """The tasks as one JSON array; None if a file is not in the daemon's own format."""
    if not all(in_daemon_format(data, name) for name, data in files):
        return None
    items = [
        b"  " + data[:-1].replace(b"\n", b"\n  ")
        for data in sorted((data for _, data in files), key=newest_first, reverse=True)
    ]
    return b"[\n" + b",\n".join(items) + b"\n]\n" if items else b"[]\n"
