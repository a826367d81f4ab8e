"""The account's rate limits, as the newest rollout that had them said (ChatGPT plans only).

Codex turns the model endpoint's `x-codex-primary-*` / `x-codex-secondary-*` headers into
`rate_limits` on the rollout's `token_count` lines: per window the percent used, its length
in minutes and when it resets (`resets_at`, epoch seconds; older versions gave
`resets_in_seconds`). The newest snapshot is kept in one file of the tasks folder, with the
time Codex wrote it, for `codexd health` and the dashboard; an API key's answers carry none,
and then nothing is kept or shown.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from codexd import jsonlines
from codexd.clock import iso, parse_iso
from codexd.errors import StorageError
from codexd.fields import Fields
from codexd.tasks import store

ACCOUNT = ".account.json"  # in tasks_dir, beside the health check's report
WINDOWS = ("primary", "secondary")


def snapshot_of(event: dict[str, Any] | None) -> dict[str, Any] | None:
    """The rate limits on a rollout `token_count` line, made plain; None when it has none."""
    payload = Fields(event).within("payload")
    if event is None or event.get("type") != "event_msg" or payload.text("type") != "token_count":
        return None
    seen = _moment(Fields(event).text("timestamp"))
    if seen is None:
        return None
    limits = payload.within("rate_limits")
    windows = {name: _window(limits.within(name), seen) for name in WINDOWS}
    found: dict[str, Any] = {name: window for name, window in windows.items() if window is not None}
    if not found:
        return None
    credits = limits.mapping("credits")
    return {"seen_at": iso(seen), "limit_id": limits.text("limit_id"), **found} | (
        {"credits": credits} if credits else {}
    )


def _window(f: Fields, seen: datetime) -> dict[str, Any] | None:
    used = f.number("used_percent", None, 0.0, 1e6)
    if used is None:
        return None
    minutes = f.integer("window_minutes", None, 1)
    at, within = f.integer("resets_at", None, 1), f.integer("resets_in_seconds", None, 0)
    resets = (
        datetime.fromtimestamp(at, UTC)
        if at is not None and at < 1 << 40
        else seen + timedelta(seconds=within)
        if within is not None and within < 1 << 32
        else None
    )
    return {"used_percent": used, "window_minutes": minutes, "resets_at": iso(resets) if resets else None}


def _moment(text: str | None) -> datetime | None:
    try:
        return parse_iso(text) if text else None
    except ValueError:
        return None


def keep(snapshot: dict[str, Any], tasks_root: Path) -> None:
    """Keep `snapshot` unless the one kept is newer (another task's rollout, read later)."""
    kept = read(tasks_root)
    if kept is not None and str(kept.get("seen_at")) > str(snapshot["seen_at"]):
        return
    with contextlib.suppress(StorageError):  # a figure to look at: the next token_count brings it again
        store.write_atomic(tasks_root / ACCOUNT, store.dump_json(snapshot), durable=False)


def read(tasks_root: Path) -> dict[str, Any] | None:
    """The snapshot kept, or None (never seen, or unreadable)."""
    try:
        found = jsonlines.object_of((tasks_root / ACCOUNT).read_bytes())
    except OSError:
        return None
    if not isinstance(found, dict) or not any(isinstance(found.get(name), dict) for name in WINDOWS):
        return None
    return found
