"""The dashboard's line of the account's rate limits, under the task list: as the newest
rollout gave them (tasks/account.py), kept current, and hidden when none did."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual.widgets import Static

from codexd.present import views
from codexd.present.shown import shown
from codexd.tasks import account

EVERY = 1.0  # seconds between looks at the file (a small JSON file, rewritten per model request)


class RateLimitsLine(Static):
    def __init__(self, tasks_root: Path, now: Callable[[], datetime]):
        super().__init__(id="account", classes="line")
        self.tasks_root, self.now = tasks_root, now

    def on_mount(self) -> None:
        self.look()
        self.set_interval(EVERY, self.look)

    def look(self) -> None:
        limits = views.account_text(account.read(self.tasks_root), self.now())
        self.update(Text(shown(f"Account: {limits}")) if limits else "")
        self.display = bool(limits)
