"""The session's rollout file, where Codex writes the use so far after every model request.

`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<thread_id>.jsonl` gets a `token_count`
event_msg per request, so a task's use is known long before its turn ends. The file is
found by its thread id in the folders of the last days, never through a link; a session
without one (another Codex version, another CODEX_HOME) is skipped without a word.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from codexd.codex.agentenv import codex_home
from codexd.fields import Fields
from codexd.tasks.records import Usage

_found: dict[str, Path] = {}  # thread id -> its rollout file, once seen
# Sessions remembered, found or missed: well above max_parallel (1000), or a daemon with more
# running tasks forgets one's wait and searches for it on every read (500 tasks: 20% of a core).
_KEPT = 4096
DAYS = 2  # a session started before yesterday is looked for no further back
# thread id -> (when it is next looked for, monotonic; the wait after that one's miss)
_missed: dict[str, tuple[float, float]] = {}
# Seconds after the first miss (Codex may make the file a moment after it names the session);
# the wait doubles with each miss up to LOOK_AGAIN_MAX (200 tasks without one: 3 searches a second).
LOOK_AGAIN = 2.0
LOOK_AGAIN_MAX = 60.0


def find(
    thread: str, environ: Mapping[str, str] = os.environ, now: datetime | None = None, again: bool = False
) -> Path | None:
    """The rollout file of session `thread`, or None. `again`: even if it was missed just now."""
    known = _found.get(thread)
    if known is not None:
        return known
    mono = time.monotonic()
    next_look, wait = _missed.get(thread, (float("-inf"), LOOK_AGAIN / 2))
    if mono < next_look and not again:
        return None
    sessions = codex_home(environ) / "sessions"
    for day in _day_folders(now or datetime.now(UTC)):
        found = _in(sessions, day, f"-{thread}.jsonl", again)
        if found is not None:
            _found[thread] = found
            while len(_found) > _KEPT:
                del _found[next(iter(_found))]
            return found
    wait = min(wait * 2, LOOK_AGAIN_MAX)
    _missed[thread] = (mono + wait, wait)
    while len(_missed) > _KEPT:
        del _missed[next(iter(_missed))]
    return None


def next_look(thread: str) -> float | None:
    """When (monotonic) a session whose rollout was missed is next looked for; None: not missed."""
    missed = _missed.get(thread) if thread not in _found else None
    return missed[0] if missed else None


_day_names: dict[int, list[str]] = {}  # for the current second: the day folders to look in


def _day_folders(moment: datetime) -> list[str]:
    """Today's and yesterday's folders (in local time and in UTC), newest first."""
    second = int(moment.timestamp())
    if second not in _day_names:
        days = {d.strftime("%Y/%m/%d") for back in range(DAYS) for d in _days(moment - timedelta(days=back))}
        _day_names.clear()
        _day_names[second] = sorted(days, reverse=True)
    return _day_names[second]


def _days(moment: datetime) -> tuple[datetime, datetime]:
    return moment, moment.astimezone()  # Codex names the folder by local time; UTC in case


def _in(sessions: Path, day: str, ending: str, fresh: bool = False) -> Path | None:
    folder = sessions / day
    names = sorted(n for n in _rollouts(folder, sessions, fresh) if n.endswith(ending))
    return folder / names[-1] if names else None


# A day's listing is shared for a second by every search (tasks started together look together).
_listings: dict[Path, tuple[float, list[str]]] = {}
LISTING_KEPT = 1.0


def _rollouts(folder: Path, sessions: Path, fresh: bool = False) -> list[str]:
    """The names of the rollout files in `folder` (none where a link is on the way)."""
    mono = time.monotonic()
    kept = _listings.get(folder)
    if kept is not None and mono - kept[0] < LISTING_KEPT and not fresh:
        return kept[1]
    try:
        if any(p.is_symlink() for p in (sessions, *folder.parents[:2], folder)):
            names = []
        else:
            names = [n for n in os.listdir(folder) if n.startswith("rollout-")]
    except OSError:
        names = []
    for old in [f for f, (at, _) in _listings.items() if mono - at >= LISTING_KEPT]:
        del _listings[old]  # (a few days' folders at most are ever kept)
    _listings[folder] = (mono, names)
    return names


def usage_of(event: dict[str, Any] | None) -> Usage | None:
    """The session's use so far, from a `token_count` event_msg; None for any other line."""
    payload = event.get("payload") if event else None
    if event is None or event.get("type") != "event_msg" or not isinstance(payload, dict):
        return None
    if payload.get("type") != "token_count":
        return None
    info = Fields(payload).within("info")
    return Usage.read(info.within("total_token_usage"))


def model_of(event: dict[str, Any] | None) -> str | None:
    """The model a turn runs on, from the rollout's `turn_context` line (`codex exec --json` never says)."""
    payload = event.get("payload") if event else None
    if event is None or event.get("type") != "turn_context" or not isinstance(payload, dict):
        return None
    model = payload.get("model")
    return model if isinstance(model, str) and 0 < len(model) <= _MODEL_NAME else None


_MODEL_NAME = 200  # a longer one is not a model's name
