"""codexd: run Codex CLI tasks unattended, watched, restarted when they hang, reported when done."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["CodexTaskMonitor", "__version__"]

TYPE_CHECKING = False  # not typing's: importing typing costs the quick commands ~5 ms
if TYPE_CHECKING:
    from codexd.api import CodexTaskMonitor


def __getattr__(name: str) -> object:
    if name == "CodexTaskMonitor":
        from codexd.api import CodexTaskMonitor

        return CodexTaskMonitor
    raise AttributeError(name)
