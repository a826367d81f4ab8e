"""A total JSON reader for every line and file that comes from outside the daemon.

Codex events, the agent's reports, its final message and files people edit by hand may
hold anything: bytes that are not UTF-8, nesting deep enough to exhaust the parser,
`NaN`, `1e999` (which Python reads as infinity) or a lone UTF-16 surrogate (which no
file can be written with). Nothing here raises for any input; non-finite numbers become
null and lone surrogates `?`, so whatever is read can be written again.
"""

from __future__ import annotations

import json
import math
from typing import Any

NOT_JSON = object()  # what `value` returns for bytes that are not one JSON value
# Deeper nesting is refused: writing it again (indented) could exhaust the stack.
MAX_DEPTH = 100


def _finite(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def _constant(_name: str) -> None:
    return None  # NaN, Infinity, -Infinity: not JSON, and not numbers we can use


_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_constant)


def _no_surrogates(found: Any) -> Any:
    if isinstance(found, str):
        return found.encode("utf-8", "replace").decode()
    if isinstance(found, list):
        return [_no_surrogates(v) for v in found]
    if isinstance(found, dict):
        return {_no_surrogates(k): _no_surrogates(v) for k, v in found.items()}
    return found


def _may_hold_surrogates(raw: bytes | str) -> bool:
    """A surrogate escape (`\\udc80`) or one raw: json.loads lets both through."""
    if isinstance(raw, bytes):
        return b"\\u" in raw or b"\xed" in raw  # \xed starts the UTF-8-style bytes of one
    if "\\u" in raw:
        return True
    try:
        raw.encode()
    except UnicodeEncodeError:
        return True
    return False


def _depth(found: Any) -> int:
    """How many lists and objects nest in `found`, counted level by level (no recursion)."""
    deepest, level = 0, [found]
    while level := [c for c in level if isinstance(c, list | dict)]:
        deepest += 1
        level = [v for c in level for v in (c.values() if isinstance(c, dict) else c)]
    return deepest


def _nests(raw: bytes | str) -> int:
    """An upper bound of the depth, at the cost of two C-speed counts."""
    if isinstance(raw, bytes):
        return raw.count(b"[") + raw.count(b"{")
    return raw.count("[") + raw.count("{")


def value(raw: bytes | str) -> Any:
    """The JSON value in `raw`, or NOT_JSON; any bytes, never an exception."""
    try:
        # json.loads(raw, parse_float=...) would build a decoder per call: a third of an event's cost
        text = raw.decode(json.detect_encoding(raw), "surrogatepass") if isinstance(raw, bytes) else raw
        found = _DECODER.decode(text)
    except (ValueError, RecursionError, TypeError):  # UnicodeDecodeError is a ValueError
        return NOT_JSON
    if _nests(raw) > MAX_DEPTH and _depth(found) > MAX_DEPTH:
        return NOT_JSON
    return _no_surrogates(found) if _may_hold_surrogates(raw) else found


def object_of(raw: bytes | str) -> dict[str, Any] | None:
    """The JSON object in `raw`; None for anything else (not JSON, an array, a number)."""
    found = value(raw)
    return found if isinstance(found, dict) else None
