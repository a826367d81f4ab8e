"""Tokens a task used, as Codex counts them: one session's figure, and the sum over sessions.

Codex reports a session's use cumulatively (a resumed run's figure includes the runs before
it), so a task keeps each session's newest figure and adds up sessions, never runs.
"""

from __future__ import annotations

from dataclasses import dataclass

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
