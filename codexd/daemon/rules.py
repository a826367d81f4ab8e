"""Health rules: when to give up, how long to wait, what a failed turn means, what to say.

Pure functions over numbers and strings, so every rule is tested with no processes and
no real time. The supervisor applies them; `checkup` uses them to report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from codexd.clock import duration, parse_iso
from codexd.tasks.records import Progress, TaskStatus

if TYPE_CHECKING:
    from codexd.config.settings import HealthSettings


STRIKES = 3  # the same unexpected error this many times in a row ends the task (or file) it is about
# What follows a run that went wrong: resume the session after a busy endpoint or a stall,
# start afresh after a lost session, or end the task failed.
Action = Literal["retry", "restart", "fresh", "fail", "wait"]  # wait: for the account's usage limit


class Failure(StrEnum):
    TRANSIENT = "transient"  # rate-limited or briefly unavailable: it passes, so retry
    AUTH = "auth"  # not logged in, or the credentials were refused: a person must act
    SESSION_LOST = "session_lost"  # `resume` found no recorded session: start afresh
    OTHER = "other"
    USAGE_LIMIT = "usage_limit"  # the account's usage limit or credits ran out: wait for the reset


_SESSION_LOST = re.compile(r"no rollout found|thread/resume failed", re.IGNORECASE)
_AUTH = re.compile(
    r"\bstatus:? 40[13]\b|unauthori[sz]ed|forbidden|not logged in|log ?in again|"
    r"(invalid|incorrect|missing) api key|missing environment variable|"
    r"authenticat|access token|refresh token",
    re.IGNORECASE,
)
# What Codex 0.169-0.171 say when the account is out (protocol/src/error.rs): "You’ve hit your
# usage limit. ... try again at 9:11 PM." (an HTTP 429 usage_limit_reached), "Quota exceeded. Check
# your plan and billing details." (insufficient_quota), workspace credits and spend caps. Matched
# before TRANSIENT: these are 429s too, but they pass only at the reset, hours away.
_USAGE_LIMIT = re.compile(
    r"hit your usage limit|usage.?limit.?(has been |was )?reached|quota exceeded|"
    r"exceeded your current quota|insufficient.?quota|out of credits|hit your spend cap",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"\bstatus:? (429|50[0-4]|529)\b|too many requests|rate.?limit|high demand|overloaded|"
    r"temporarily unavailable|service unavailable|bad gateway|gateway time-?out|"
    r"stream disconnected|connection (reset|refused|closed)|error sending request|"
    r"timed out|timeout",
    re.IGNORECASE,
)


def classify(error: str) -> Failure:
    """What kind of failure a failed run's error describes (the session check comes first)."""
    for kind, pattern in (
        (Failure.SESSION_LOST, _SESSION_LOST),
        (Failure.USAGE_LIMIT, _USAGE_LIMIT),
        (Failure.AUTH, _AUTH),
        (Failure.TRANSIENT, _TRANSIENT),
    ):
        if pattern.search(error):
            return kind
    return Failure.OTHER


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds before attempt `attempt` (1, 2, 3...): base, 2*base, 4*base..., at most cap."""
    doublings = min(max(0, attempt - 1), 64)  # 2**1024 seconds overflows a float; 2**64 is plenty
    return float(min(cap, base * 2**doublings))


def is_stalled(
    idle: float, stall_timeout: float, quiet: float | None = None, busy_timeout: float | None = None
) -> bool:
    """No progress for `idle` seconds. A tree seen busy (`quiet`: seconds since the later of
    the last progress and the last busy reading) is not stalled until it has been quiet for
    `stall_timeout`, or without progress for `busy_timeout` (an endless loop is caught)."""
    if quiet is None or busy_timeout is None:
        return idle >= stall_timeout
    return min(quiet, idle) >= stall_timeout or past_busy_timeout(idle, stall_timeout, busy_timeout)


def is_busy(cpu_used: float, elapsed: float, busy_cpu: float, files_grew: bool = False) -> bool:
    """A tree that used more than `busy_cpu` of one core over `elapsed` seconds, or whose
    open files grew, is working."""
    return files_grew or (elapsed > 0 and cpu_used > busy_cpu * elapsed)


def past_busy_timeout(idle: float, stall_timeout: float, busy_timeout: float) -> bool:
    """Busy, but without progress for longer than busy work may take: a stall all the same."""
    return idle >= max(busy_timeout, stall_timeout)


def stall_timeout_of(status: TaskStatus, policy: HealthSettings) -> float:
    """The task's own (from its front matter), else the configured one."""
    return status.stall_timeout or policy.stall_timeout


def timeouts_of(status: TaskStatus, policy: HealthSettings) -> tuple[float, float]:
    """Its stall timeout, and how long busy work may go without progress: `health.busy_timeout`,
    never shorter (a front matter's stall timeout may be longer: then busy-ness extends nothing)."""
    stall_timeout = stall_timeout_of(status, policy)
    return stall_timeout, max(policy.busy_timeout, stall_timeout)


def late_by(idle: float, quiet: float, stall_timeout: float, busy_timeout: float) -> float:
    """How long after its deadline a stall was noticed."""
    if past_busy_timeout(idle, stall_timeout, busy_timeout) and quiet < stall_timeout:
        return idle - max(busy_timeout, stall_timeout)
    return min(quiet, idle) - stall_timeout


def stall_line(idle: float, quiet: float, stall_timeout: float, busy_timeout: float) -> str:
    """progress.log's line for a stall: silent and idle, or busy for longer than busy work may take."""
    said = f"Stalled: no progress for {duration(idle)}"
    if quiet < stall_timeout:
        return f"{said}, its processes busy all the while (busy_timeout {duration(busy_timeout)})"
    if quiet < idle - 1:
        return f"{said}, idle for the last {duration(quiet)} (stall_timeout {duration(stall_timeout)})"
    return f"{said} (stall_timeout {duration(stall_timeout)})"


def timeout_of(status: TaskStatus, policy: HealthSettings) -> float | None:
    taken = status.taken
    return (taken.timeout if taken else None) or policy.timeout


def timeout_ends(status: TaskStatus, policy: HealthSettings) -> float | None:
    """When (epoch seconds) the task's `timeout` ends, if it has one and has started."""
    timeout = timeout_of(status, policy)
    if timeout is None or status.started_at is None:
        return None
    return parse_iso(status.started_at).timestamp() + timeout


def over_budget(status: TaskStatus, now: datetime, policy: HealthSettings) -> str | None:
    """The error of a task over its limits (its own, else the settings'): `timeout`, wall time
    since it first started, across restarts; `max_tokens`, its `usage.total_tokens` (read
    loosely, so a record without usage has none). None while it is within them."""
    timeout = timeout_of(status, policy)
    if timeout is not None and status.started_at is not None:
        ran = (now - parse_iso(status.started_at)).total_seconds()
        if ran >= timeout:
            return f"timeout {timeout:g}s reached: ran {int(ran)}s"
    taken = status.taken
    most = (taken.max_tokens if taken else None) or policy.max_tokens
    used = status.usage.total_tokens if status.usage is not None else None
    if most is not None and isinstance(used, int) and used >= most:
        return f"max_tokens {most} reached: {used} used"
    return None


@dataclass(frozen=True)
class Next:
    """What the supervisor does after a run went wrong."""

    action: Action
    line: str  # for progress.log
    delay: float = 0.0
    error: str | None = None  # the task's error, when it fails


def after_stall(stalls: int, idle: float, stall_timeout: float, policy: HealthSettings) -> Next:
    """The task made no progress for `idle` seconds; this is its `stalls`-th stall."""
    restarts = stalls - 1
    if restarts >= policy.max_restarts:
        error = (
            f"stalled: no progress for {duration(idle)} (stall_timeout {duration(stall_timeout)}), "
            f"{restarts} restart{'s' * (restarts != 1)} did not help (health.max_restarts = "
            f"{policy.max_restarts})"
        )
        return Next("fail", f"Failed: {error}", error=error)
    delay = backoff(stalls, policy.backoff, policy.backoff_max)
    return Next(
        "restart",
        f"Restarting in {duration(delay)} (restart {stalls} of {policy.max_restarts})",
        delay=delay,
    )


def after_failure(error: str, streak: int, policy: HealthSettings, afresh: int = 0) -> Next:
    """A run ended with `error`; `streak` earlier runs in a row failed for a passing reason;
    `afresh` fresh starts were made after a lost session (one is allowed: then it fails)."""
    kind = classify(error)
    if kind == Failure.SESSION_LOST and afresh == 0:
        delay = backoff(1, policy.backoff, policy.backoff_max)
        line = f"The Codex session could not be resumed; starting the task afresh in {duration(delay)}"
        return Next("fresh", line, delay=delay)
    if kind == Failure.USAGE_LIMIT:  # not failed, no retry spent: the daemon's hold says how long
        return Next("wait", f"Usage limit reached: {error}", error=error)
    if kind == Failure.AUTH:
        fix = "log in to Codex (`codex login`, or set the provider's API key), then submit the task again"
        message = f"Codex could not authenticate with the model provider: {fix} ({error})"
        return Next("fail", f"Failed: {message}", error=message)
    if kind == Failure.TRANSIENT and streak < policy.max_retries:
        delay = backoff(streak + 1, policy.backoff, policy.backoff_max)
        line = (
            f"The model endpoint is busy or unavailable; retrying in {duration(delay)} "
            f"(retry {streak + 1} of {policy.max_retries}): {error}"
        )
        return Next("retry", line, delay=delay)
    if kind == Failure.TRANSIENT:
        message = f"{error} (failed {streak + 1} times in a row; health.max_retries = {policy.max_retries})"
        return Next("fail", f"Failed: {message}", error=message)
    return Next("fail", f"Failed: {error}", error=error)


def continuation_prompt(reason: str, progress: Progress) -> str:
    """What a resumed session is told, so the agent carries on instead of starting over."""
    parts = [
        f"Your previous run was interrupted: {reason}.",
        "Continue the same task from where you left off. Do not redo steps that are already "
        "done; if unsure, check the state of the workspace first.",
    ]
    if progress.items:
        parts.append("Already finished: " + "; ".join(item.title for item in progress.items[-30:]) + ".")
    if progress.current:
        parts.append(f"You were working on: {progress.current}.")
    return " ".join(parts)
