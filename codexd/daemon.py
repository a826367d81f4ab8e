"""`codexd daemon`: the supervisor in the foreground, with signals handled the safe way.

Signal handlers only record; the loop acts. The first SIGTERM or SIGINT stops intake and
exits cleanly, leaving running tasks to the next daemon; a second one exits at once.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

import structlog

from codexd import logs
from codexd.settings import Settings
from codexd.supervisor import Supervisor

log = structlog.get_logger()


def run(settings: Settings, stop_tasks: bool = False) -> None:
    logs.configure(settings.daemon.log_level)
    supervisor = Supervisor(settings, stop_tasks_on_exit=stop_tasks)
    signals_seen: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals_seen.append(signum)
        if len(signals_seen) > 1:
            os._exit(128 + signum)  # asked twice: stop now, tasks keep running
        supervisor.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    supervisor.run()
