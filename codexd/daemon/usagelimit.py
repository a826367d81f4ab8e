"""The account's usage limit: when Codex says it is reached, every task waits for the reset.

The limit is the account's, so the hold is the daemon's: a task that met it keeps its slot
and owes a resume at the reset (`ResumeKind.LIMIT`, counted in neither restarts nor retries),
and no queued task starts before then (each shows `waiting` with the same reason). The hold
is kept in one small file in the tasks folder, so a new daemon honours it, and lifts by
itself at its time; one notice says it began and one that it is over.

When the reset is: Codex 0.169-0.171 say "You’ve hit your usage limit. ... try again at
9:11 PM." (or "at Nov 29th, 2026 2:44 AM", in its local time, to the minute), or "try again
later" when the server gave no time. The session's rollout file has the exact second when
the server sent its rate-limit headers (a window at 100% with its `resets_at`). Without a
time, the wait is `health.usage_limit_wait`, doubled each time the limit is met again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from codexd import jsonlines, tailing
from codexd.clock import iso, parse_iso
from codexd.daemon import rules
from codexd.errors import CodexdError
from codexd.fields import Fields
from codexd.tasks import account, files
from codexd.tasks.records import Resume, ResumeKind, TaskStatus, Waiting
from codexd.tasks.states import TaskState

if TYPE_CHECKING:
    from codexd.daemon.ledger import Ledger

log = structlog.get_logger()
HOLD_FILE = ".usage-limit.json"  # in the tasks folder
WAIT_MAX = 4 * 3600.0  # the longest wait without a reset time (unless the setting asks for more)
ROLLOUT_TAIL = 256 * 1024  # the end of the rollout file where the limit's token_count is
MINUTE = timedelta(minutes=1)
REASON = "usage limit reached"

_AT = re.compile(
    r"try again at (?:(?P<month>[A-Z][a-z]{2}) (?P<day>\d{1,2})(?:st|nd|rd|th)?, (?P<year>\d{4}) )?"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2}) ?(?P<half>[AP]M)",
    re.IGNORECASE,
)
_IN = re.compile(
    r"try again in ((?:\s*(?:,|and)?\s*\d+\s*(?:days?|hours?|minutes?|seconds?))+)", re.IGNORECASE
)
_PART = re.compile(r"(\d+)\s*(day|hour|minute|second)", re.IGNORECASE)


def stated_reset(error: str, now: datetime) -> datetime | None:
    """The reset Codex's message names, as the first moment surely past it: Codex gives the
    minute (in its local time, which is `now`'s zone), so the end of that minute. Older
    releases said "try again in 2 hours 3 minutes". None: "try again later", or no time."""
    local = now.astimezone()
    found = _AT.search(error)
    if found is not None:
        hour = int(found["hour"]) % 12 + (12 if found["half"].upper() == "PM" else 0)
        day = local.date()
        if found["year"]:
            try:  # chrono's %b: English month names, whatever the locale
                day = datetime.strptime(f"{found['month']} {found['day']} {found['year']}", "%b %d %Y").date()
            except ValueError:
                return None
        at = local.replace(
            year=day.year, month=day.month, day=day.day, hour=hour, minute=int(found["minute"]), second=0
        )
        at = at.replace(microsecond=0)
        if not found["year"] and at - local > timedelta(hours=23):
            at -= timedelta(days=1)  # said just before midnight, read just after
        return at + MINUTE
    found = _IN.search(error)
    if found is None:
        return None
    units = {"day": 86400, "hour": 3600, "minute": 60, "second": 1}
    seconds = sum(int(n) * units[unit.lower()] for n, unit in _PART.findall(found[1]))
    return now + timedelta(seconds=seconds)


def exact_reset(rollout: str | None, now: datetime) -> datetime | None:
    """The reset to the second from the session's rollout file: the latest `resets_at` of a
    rate-limit window at 100% in its last token_count (as `tasks/account` reads them). None
    when it has none."""
    if not rollout:
        return None
    found: datetime | None = None
    for raw in tailing.tail_bytes(rollout, ROLLOUT_TAIL).splitlines():
        if b'"rate_limits"' not in raw:
            continue
        snapshot = account.snapshot_of(jsonlines.object_of(raw))
        if snapshot is None:
            continue
        windows = [snapshot.get(name) for name in account.WINDOWS]
        full = [w["resets_at"] for w in windows if w and w["used_percent"] >= 100 and w["resets_at"]]
        found = parse_iso(max(full)) if full else None
    return found if found is not None and found > now else None


def reset_time(error: str, rollout: str | None, now: datetime) -> datetime | None:
    """When the limit resets: to the second when the rollout says so within the minute Codex
    names (or names none), else the end of that minute; None when nothing says."""
    stated, exact = stated_reset(error, now), exact_reset(rollout, now)
    if exact is not None and (stated is None or stated - MINUTE <= exact < stated):
        return exact
    return stated if stated is not None and stated > now else None


def local_clock(moment: datetime, now: datetime) -> str:
    """`15:05` in this machine's local time, with the date when it is not today."""
    local = moment.astimezone()
    return local.strftime("%H:%M" if local.date() == now.astimezone().date() else "%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Hold:
    """The daemon-wide wait: from `since` until `until`; `attempt` counts waits without a reset
    time since work last completed; `lifted` once work resumed (and that was announced)."""

    task_id: str  # the task that met the limit first: its listeners hear the notices
    since: str
    until: str
    error: str
    attempt: int = 0
    lifted: bool = False

    def waiting(self, now: datetime) -> Waiting:
        return Waiting(f"{REASON}; resumes at {local_clock(parse_iso(self.until), now)}", self.until)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "since": self.since,
            "until": self.until,
            "error": self.error,
            "attempt": self.attempt,
            "lifted": self.lifted,
        }

    @classmethod
    def read(cls, data: object) -> Hold | None:
        f = Fields(data)
        task_id, since, until = f.text("task_id"), f.text("since"), f.text("until")
        if task_id is None or since is None or until is None:
            return None
        try:
            parse_iso(since), parse_iso(until)
        except ValueError:
            return None
        attempt = f.integer("attempt") or 0
        return cls(task_id, since, until, f.text("error") or "", attempt, f.data.get("lifted") is True)


@dataclass(frozen=True)
class Wait:
    """What a task that met the limit owes: a resume at the hold's end, and why it waits."""

    resume: Resume
    delay: float  # seconds until it resumes
    line: str  # for progress.log
    waiting: Waiting


class UsageLimit:
    """The hold, its file, and what it tells the ledger (the queue's waits, the notices)."""

    def __init__(self, book: Ledger):
        self.book = book
        self.path: Path = book.tasks.root / HOLD_FILE
        self.hold = self._load()
        book.listeners.append(self._heard)

    def active(self, now: datetime) -> bool:
        return self.hold is not None and not self.hold.lifted and parse_iso(self.hold.until) > now

    def met(self, status: TaskStatus, error: str, now: datetime, wait: float) -> Hold:
        """`status`'s run ended on the usage limit: the hold begins, or goes on to the later
        reset. Without a reset time it lasts `wait` (health.usage_limit_wait), doubled for each
        limit met again before work completed. Said once per hold, when it begins."""
        current = self.hold if self.active(now) else None
        reset = reset_time(error, status.daemon.rollout, now)
        if current is not None:
            until = max(parse_iso(current.until), reset or now)
            hold = Hold(current.task_id, current.since, iso(until), current.error, current.attempt)
        else:
            attempt = (self.hold.attempt if self.hold is not None else 0) + (reset is None)
            delay = rules.backoff(attempt, wait, max(WAIT_MAX, wait))
            until = reset or now + timedelta(seconds=delay)
            hold = Hold(status.task_id, iso(now), iso(until), error, attempt)
        self._keep(hold)
        if current is None:
            log.warning("usage_limit.reached", task_id=status.task_id, until=hold.until, error=error)
            self.book.emit(status.with_(waiting=hold.waiting(now)), "usage_limit")
        return hold

    def wait(self, status: TaskStatus, error: str, now: datetime, wait: float) -> Wait:
        """The task keeps its session and resumes it when the hold ends: not failed, and
        counted in neither restarts nor retries (`ResumeKind.LIMIT`)."""
        hold = self.met(status, error, now, wait)
        waiting = hold.waiting(now)
        resume = Resume(0, ResumeKind.LIMIT, "the account's usage limit was reached; it has been reset")
        delay = max(0.0, (parse_iso(hold.until) - now).total_seconds())
        return Wait(resume, delay, f"Waiting: {waiting.reason} ({error})", waiting)

    def holds(self, now: datetime) -> bool:
        """True while the hold lasts: every queued task shows why it waits. At its time it
        lifts: the queued tasks are let go and one notice says work resumes."""
        hold = self.hold
        if hold is None or hold.lifted:
            return False
        if not self.active(now):
            self._lift(hold, now)
            return False
        waiting = hold.waiting(now)
        for status in list(self.book.queued):
            self.book.hold(status, waiting, now)
        return True

    def _lift(self, hold: Hold, now: datetime) -> None:
        self._keep(Hold(hold.task_id, hold.since, hold.until, hold.error, hold.attempt, lifted=True))
        for status in list(self.book.queued):
            if status.waiting is not None and status.waiting.reason.startswith(REASON):
                self.book.hold(status, None, now)
        log.info("usage_limit.lifted", since=hold.since, until=hold.until)
        met = self._status_of(hold.task_id)
        if met is not None:
            self.book.emit(met.with_(waiting=hold.waiting(now)), "usage_resumed")

    def _status_of(self, task_id: str) -> TaskStatus | None:
        running = self.book.running.get(task_id)
        if running is not None:
            return running.status
        try:
            return self.book.queued_status(task_id) or self.book.tasks.read_status(task_id)
        except CodexdError as exc:  # removed by hand, or broken: the notice has no task to name
            log.warning("usage_limit.task_gone", task_id=task_id, error=str(exc))
            return None

    def _heard(self, status: TaskStatus, event: str) -> None:
        """Work completed after the limit: a later limit without a reset time waits the first wait."""
        if event == TaskState.COMPLETED and self.hold is not None and self.hold.lifted:
            self._keep(None)

    def _keep(self, hold: Hold | None) -> None:
        self.hold = hold
        if hold is None:
            self.path.unlink(missing_ok=True)
        else:
            files.write_atomic(self.path, files.dump_json(hold.to_dict()))

    def _load(self) -> Hold | None:
        hold = hold_of(self.book.tasks.root)
        if hold is None and self.path.exists():
            log.warning("usage_limit.file_ignored", path=str(self.path), fix="it is replaced when met again")
        return hold


def hold_of(tasks_dir: Path) -> Hold | None:
    """The hold as its file says."""
    raw = files.read_text(tasks_dir / HOLD_FILE)
    return Hold.read(jsonlines.object_of(raw)) if raw is not None else None


def account_wait(tasks_dir: Path, now: datetime) -> Waiting | None:
    """What every task waits for while the account's usage limit holds (`health`, the dashboard)."""
    hold = hold_of(tasks_dir)
    if hold is None or hold.lifted or parse_iso(hold.until) <= now:
        return None
    return hold.waiting(now)
