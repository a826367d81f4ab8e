"""How a Codex run ended: the exit code and the turn events decide, the error says why."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass

from codexd import jsonlines
from codexd.codex.events import failure, is_chatter, one_line
from codexd.tasks.states import TaskState

STDERR_LINES = 40  # enough of stderr's end to hold the error line above Codex's usage text
# `error: the argument '--x' cannot be used multiple times`, `Error: Unknown feature flag: x`,
# `Error parsing -c overrides: ...`, `Failed to read output schema file ...`
_CAUSE = re.compile(r"^(error\b|failed to )", re.IGNORECASE)
# What Codex prints around the cause: clap's usage and tips, Rust backtraces, warnings.
_NOISE = re.compile(
    r"^(usage:|codex( exec)? \[|for more information|tip:|stack backtrace:|\d+: |at \S|warning:"
    r"|reading (prompt|additional input) from stdin)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RunSummary:
    turn_completed: bool = False
    turn_failed: str | None = None
    last_error: str | None = None


def summarize(lines: Iterable[bytes]) -> RunSummary:
    """What one run's events say about its end (the last turn decides)."""
    completed, failed, last_error = False, None, None
    for line in lines:
        if b'"turn.' not in line and b'"error"' not in line:
            continue  # most lines of a long run: not worth parsing (a 1 GB run is judged in seconds)
        event = jsonlines.object_of(line) or {}
        kind = event.get("type")
        message = event.get("message")
        if kind == "turn.started":
            completed, failed = False, None
        elif kind == "turn.completed":
            completed = True
        elif kind == "turn.failed":
            failed = failure(event) or "turn failed"
        elif kind == "error" and isinstance(message, str) and not is_chatter(message):
            last_error = message
    return RunSummary(completed, failed, last_error)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def stderr_reason(tail: list[str]) -> str | None:
    """Why Codex stopped, from the end of its stderr: its own `error:` line when there is one
    (the usage text and backtrace after it are noise), else the last meaningful lines."""
    meaningful = [line.strip() for line in tail if line.strip()]
    causes = [line for line in meaningful if _CAUSE.match(line)]
    if causes:
        return one_line(causes[-1], 500)
    kept = [line for line in meaningful if not _NOISE.match(line)]
    return one_line(" | ".join(kept[-3:]), 500) if kept else None


def decide(exit_code: int | None, run: RunSummary, stderr_tail: list[str]) -> tuple[TaskState, str | None]:
    """completed or failed, with the real reason for a failure."""
    if run.turn_failed is not None:
        return TaskState.FAILED, f"Codex turn failed: {one_line(run.turn_failed, 500)}"
    if run.turn_completed and exit_code in (0, None):
        return TaskState.COMPLETED, None
    detail = run.last_error or stderr_reason(stderr_tail)
    if exit_code is None:
        why = "Codex ended while no daemon was watching, without finishing its turn"
    elif exit_code < 0:
        why = f"Codex was killed by {_signal_name(exit_code)}"
    elif exit_code == 0:
        why = "Codex exited without finishing its turn"
    else:
        why = f"Codex exited with code {exit_code}"
    return TaskState.FAILED, f"{why}: {detail}" if detail else why
