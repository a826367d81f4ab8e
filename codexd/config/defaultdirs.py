"""Where codexd keeps things by default, and what may name a task folder, with `os` alone.

The same folders platformdirs gives on Linux (XDG) and macOS, computed without importing
it, so that the quick commands start fast; other systems ask platformdirs.
"""

from __future__ import annotations

import os
import sys

APP = "codexd"
ID_FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ID_REST = ID_FIRST + "._-"


def is_task_id(text: str) -> bool:
    """Can this name a task folder? SPEC's `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, without `re`.
    (strip() takes allowed characters off both ends: any other stops it, and is left.)"""
    return 0 < len(text) <= 128 and text[0] in ID_FIRST and not text.strip(ID_REST)


def expand(value: str) -> str:
    """`~` and relative paths made absolute, as the user meant them where they typed them."""
    return os.path.abspath(os.path.expanduser(value))


def _xdg(variable: str, fallback: str) -> str:
    base = os.environ.get(variable, "").strip() or os.path.expanduser(fallback)
    return os.path.join(base, APP)


def _app_dir(kind: str, variable: str, fallback: str) -> str:
    if sys.platform == "darwin":
        return os.path.expanduser(f"~/Library/Application Support/{APP}")
    if sys.platform.startswith("linux"):
        return _xdg(variable, fallback)
    import platformdirs

    return str(getattr(platformdirs, f"user_{kind}_dir")(APP))


def state_dir() -> str:
    return _app_dir("state", "XDG_STATE_HOME", "~/.local/state")


def config_dir() -> str:
    return _app_dir("config", "XDG_CONFIG_HOME", "~/.config")


def cache_dir() -> str:
    """Where the quick commands remember what they parsed (config/paths)."""
    if sys.platform == "darwin":
        return os.path.expanduser(f"~/Library/Caches/{APP}")
    return _app_dir("cache", "XDG_CACHE_HOME", "~/.cache")
