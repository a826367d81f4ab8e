"""Tokens a task used, as Codex counts them: one session's figure, and the sum over sessions.

Codex reports a session's use cumulatively (a resumed run's figure includes the runs before
it), so a task keeps each session's newest figure and adds up sessions, never runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from codexd.fields import Fields


@dataclass(frozen=True)
class Usage:
    """Tokens used, as Codex counts them (`cached_input_tokens` is a part of `input_tokens`)."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0  # a part of output_tokens
    total_tokens: int = 0  # input + output

    @classmethod
    def of(cls, inputs: int = 0, cached: int = 0, outputs: int = 0, reasoning: int = 0) -> Usage:
        return cls(inputs, cached, outputs, reasoning, inputs + outputs)

    def __add__(self, other: Usage) -> Usage:
        return Usage.of(
            self.input_tokens + other.input_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_output_tokens + other.reasoning_output_tokens,
        )

    def __sub__(self, earlier: Usage) -> Usage:
        """What was used since `earlier` (a figure of the same session); never below zero."""
        return Usage.of(
            max(self.input_tokens - earlier.input_tokens, 0),
            max(self.cached_input_tokens - earlier.cached_input_tokens, 0),
            max(self.output_tokens - earlier.output_tokens, 0),
            max(self.reasoning_output_tokens - earlier.reasoning_output_tokens, 0),
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_output_tokens": self.reasoning_output_tokens,
            "total_tokens": self.total_tokens,
        }

    @classmethod
    def read(cls, f: Fields) -> Usage | None:
        """Figures as status.json or Codex's `usage` hold them; None when there are none."""
        if not f.data:
            return None
        return cls.of(*(f.integer(key) or 0 for key in _USAGE_COUNTS))

    @classmethod
    def sessions(cls, f: Fields) -> dict[str, Usage]:
        found = {thread: cls.read(f.within(thread)) for thread in list(f.data)[:_MAX_SESSIONS]}
        return {thread: used for thread, used in found.items() if used is not None}

    @staticmethod
    def total(sessions: dict[str, Usage]) -> Usage | None:
        """The task's use over all its sessions; None before any was reported."""
        return sum(sessions.values(), Usage()) if sessions else None


_USAGE_COUNTS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")
_MAX_SESSIONS = 1000  # fresh starts a task may have had; more in a hand-made record are left out


class Price(Protocol):
    """What the user says a model costs, in USD per million tokens (`[prices.MODEL]`)."""

    @property
    def input(self) -> float: ...
    @property
    def cached_input(self) -> float: ...
    @property
    def output(self) -> float: ...


@dataclass(frozen=True)
class Cost:
    """An estimate from the user's prices: never a bill (Codex reports tokens, not money)."""

    usd: float
    model: str  # the model(s) priced, "a + b" when sessions used several

    def to_dict(self) -> dict[str, Any]:
        return {"usd": self.usd, "model": self.model, "estimated": True}

    @classmethod
    def read(cls, f: Fields) -> Cost | None:
        usd, model = f.number("usd"), f.text("model")
        if usd is None or model is None:
            if f.data:
                f.bad.append(f.prefix.rstrip("."))
            return None
        return cls(usd, model)


def priced(used: Usage, price: Price) -> float:
    """USD for `used` at `price`: cached input at its own price, reasoning within output."""
    fresh = max(used.input_tokens - used.cached_input_tokens, 0)
    per_million = fresh * price.input + used.cached_input_tokens * price.cached_input
    return (per_million + used.output_tokens * price.output) / 1_000_000


def cost_of(sessions: dict[str, Usage], models: dict[str, str], prices: Mapping[str, Price]) -> Cost | None:
    """The task's estimated cost; None unless every session that used tokens has a priced model."""
    used = {thread: figure for thread, figure in sessions.items() if figure.total_tokens}
    if not used or any(prices.get(models.get(thread, "")) is None for thread in used):
        return None
    usd = sum(priced(figure, prices[models[thread]]) for thread, figure in used.items())
    return Cost(round(usd, 6), " + ".join(sorted({models[thread] for thread in used})))


def models_of(f: Fields) -> dict[str, str]:
    """Cursor.models: each session's model, as its rollout names it."""
    found = {thread: f.text(thread) for thread in list(f.data)[:_MAX_SESSIONS]}
    return {thread: model for thread, model in found.items() if model}


@dataclass(frozen=True)
class Run:
    """One Codex run of the task, as its events began it: the session it ran, and that
    session's figure when it began (zero for a new session). Its share is what the session
    used until the next run of that session began, or until now."""

    at: str | None  # when the daemon read its start
    thread: str
    before: Usage

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "thread": self.thread, "before": self.before.to_dict()}

    @classmethod
    def read(cls, f: Fields) -> Run | None:
        thread = f.text("thread")
        if not thread:
            return None
        return cls(f.text("at"), thread, Usage.read(f.within("before")) or Usage())


RUNS_KEPT = 100  # the last ones: a record stays small however often a task is resumed


def runs_of(f: Fields) -> tuple[Run, ...]:
    """Cursor.runs as status.json holds them."""
    found = [Run.read(Fields(entry)) for entry in f.items("runs")[-RUNS_KEPT:]]
    return tuple(run for run in found if run is not None)


def shares(runs: tuple[Run, ...], sessions: dict[str, Usage]) -> list[tuple[Run, str, Usage]]:
    """Each run, how it began ("first start", "resumed", "new session") and the tokens it used."""
    found = []
    for i, run in enumerate(runs):
        later = next((r for r in runs[i + 1 :] if r.thread == run.thread), None)
        end = later.before if later is not None else sessions.get(run.thread, run.before)
        earlier = {r.thread for r in runs[:i]}
        resumed = run.thread in earlier or (i == 0 and run.before.total_tokens > 0)  # the first ones not kept
        how = "resumed" if resumed else "first start" if i == 0 else "new session"
        found.append((run, how, end - run.before))
    return found
