"""systemd's notify protocol with the standard library: READY, WATCHDOG, STOPPING, STATUS.

Outside systemd ($NOTIFY_SOCKET unset) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time


def notify(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


def reloading() -> bool:
    # Type=notify-reload wants the monotonic time with RELOADING=1.
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


class Watchdog:
    """Sends WATCHDOG=1 at half the interval systemd asked for, when `ping()` is called.

    The loop calls `ping()` after each round of real work, so a wedged loop stops the
    pings and systemd restarts the daemon.
    """

    def __init__(self) -> None:
        usec = os.environ.get("WATCHDOG_USEC", "")
        owner = os.environ.get("WATCHDOG_PID", "")
        wanted = usec.isdigit() and (not owner or owner == str(os.getpid()))
        self.every = int(usec) / 2e6 if wanted else None
        self._next = 0.0

    def ping(self) -> None:
        if self.every is None:
            return
        now = time.monotonic()
        if now >= self._next:
            notify("WATCHDOG=1")
            self._next = now + self.every
