"""codexd: run Codex CLI tasks unattended, watched, restarted when they hang, reported when done."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CodexTaskMonitor", "__version__"]

if TYPE_CHECKING:
    from codexd.api import CodexTaskMonitor


def __getattr__(name: str) -> Any:
    if name == "CodexTaskMonitor":
        from codexd.api import CodexTaskMonitor

        return CodexTaskMonitor
    raise AttributeError(name)
