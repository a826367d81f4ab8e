"""Loaded by a daemon under test when this folder is on PYTHONPATH: plants a bug where
CODEXD_TEST_FAULT says, as a malformed event would set one off."""

from __future__ import annotations

import os
from typing import Any

POISON = "test.poison"


def _plant_in_follow() -> None:
    from codexd.codex import events
    from codexd.daemon import follower

    real = events.apply_event

    def apply_event(state: Any, event: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if event.get("type") == POISON:
            raise AttributeError("'NoneType' object has no attribute 'get'")
        return real(state, event, *args, **kwargs)

    events.apply_event = apply_event
    if hasattr(follower, "apply_event"):
        follower.apply_event = apply_event  # type: ignore[attr-defined]


if os.environ.get("CODEXD_TEST_FAULT") == "follow":
    _plant_in_follow()
