"""`codexd daemon`: the supervisor in the foreground, with signals handled the safe way.

Signal handlers only record; the loop acts. The first SIGTERM or SIGINT stops intake and
exits cleanly, leaving running tasks to the next daemon (they run in sessions of their
own, and a new daemon re-adopts them). `--stop-tasks` stops them instead. A second
signal, or a shutdown that takes longer than `daemon.stop_timeout`, exits at once.
SIGHUP reloads the settings. Under systemd it speaks the notify protocol.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import threading
from pathlib import Path
from types import FrameType

import structlog

from codexd.codex import containment
from codexd.config import settings
from codexd.daemon import logsetup, sdnotify
from codexd.daemon.supervisor import Supervisor
from codexd.errors import CodexdError, ConfigError

log = structlog.get_logger()
EXIT_FORCED = 1


class Signals:
    """What arrived, for the loop to act on."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor
        self.stops = 0
        self.reload = False

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stops += 1
        if self.stops > 1:
            os._exit(128 + signum)  # asked twice: stop now; tasks keep running
        self.supervisor.request_stop()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload = True
        self.supervisor.wake()


def run(loaded: settings.Settings, config: str | Path | None, stop_tasks: bool = False) -> None:
    logsetup.configure(loaded.daemon.log_level)
    trees = containment.setup(loaded.process_trees)  # how whole process trees are ended, once
    supervisor = Supervisor(loaded, stop_tasks_on_exit=stop_tasks)
    signals = Signals(supervisor)
    signals.install()
    watchdog = sdnotify.Watchdog()
    supervisor.start()
    log.info("daemon.process_trees", mode=trees.mode, how=trees.shown)
    sdnotify.notify("READY=1\nSTATUS=supervising")
    try:
        while not supervisor.stopping:
            supervisor.step()
            watchdog.ping()  # only after a round of real work
            if signals.reload:
                signals.reload = False
                _reload(supervisor, config)
    finally:
        sdnotify.notify("STOPPING=1")
        _exit_after(supervisor.settings.daemon.stop_timeout)
        supervisor.close()


def _reload(supervisor: Supervisor, config: str | Path | None) -> None:
    """SIGHUP: new settings, or the ones in use kept, whatever went wrong; the daemon goes on."""
    sdnotify.reloading()
    try:
        new, _ = settings.load(config)
    except CodexdError as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        log.error("settings.reload_failed", problems=problems, kept="the settings in use")
    except Exception as exc:  # a reload must never end the daemon (signals are not Exceptions)
        log.exception("settings.reload_failed", problems=[repr(exc)], kept="the settings in use")
    else:
        _apply(supervisor, new)
    sdnotify.notify("READY=1")


def _apply(supervisor: Supervisor, new: settings.Settings) -> None:
    old = supervisor.settings
    try:
        supervisor.reload(new)
        logsetup.configure(new.daemon.log_level)
    except Exception as exc:
        log.exception("settings.reload_failed", problems=[repr(exc)], kept="the settings in use")
        try:
            supervisor.reload(old)
        except Exception:
            log.exception("settings.restore_failed")


def _exit_after(seconds: float) -> None:
    """A shutdown that hangs (a stuck filesystem, a task that will not die) is cut short."""

    def force() -> None:
        log.error("daemon.stop_timeout", seconds=seconds, fix="the threads' stacks follow: report them")
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(all_threads=True)  # what it hung on, for the bug report
        os._exit(EXIT_FORCED)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()
