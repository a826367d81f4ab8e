"""Delivering the outbox, off the supervision path.

One thread hands due notices to short-lived sender threads. Each URL is a lane: one
delivery at a time, in the order the notices were made, and a lane whose endpoint failed
waits out its backoff while the other lanes go on. So an endpoint that hangs or is down
delays nobody but itself. A notice is retried until it is delivered or it expires.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from codexd.clock import Clock, duration
from codexd.config.settings import NotifySettings
from codexd.daemon import rules
from codexd.errors import StorageError
from codexd.notify import answers
from codexd.notify.endpoints import Attempt
from codexd.notify.outbox import Delivery, Outbox
from codexd.notify.redact import mask_url

log = structlog.get_logger()
Send = Callable[[Delivery, float], Attempt]  # (delivery, timeout) -> what came of it
GaveUp = Callable[[Delivery, str], None]
IDLE_WAIT = 1.0
RETRY_AFTER_MAX = 3600.0  # a longer Retry-After is taken as this (or notify.backoff_max, if longer)


def _about(delivery: Delivery) -> dict[str, str]:
    """What every log line about a delivery names: the task, the event, the URL (masked)."""
    return {"task_id": delivery.task_id, "notice": delivery.event, "url": mask_url(delivery.url)}


@dataclass
class Lane:
    busy: bool = False
    failures: int = 0  # in a row
    next_at: float = 0.0  # monotonic


class Courier:
    def __init__(self, outbox: Outbox, policy: NotifySettings, send: Send, gave_up: GaveUp, clock: Clock):
        self.outbox = outbox
        self.policy = policy  # backoff, backoff_max, expire, timeout: replaced whole on a reload
        self._send = send
        self._gave_up = gave_up
        self._clock = clock
        self._pending: dict[str, Delivery] = {}
        self._lanes: dict[str, Lane] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._senders: set[threading.Thread] = set()

    def start(self) -> None:
        """Take up what an earlier daemon left in the outbox, and begin delivering."""
        self.outbox.prune(self._clock.now().timestamp())
        left = self.outbox.pending()
        with self._lock:
            for delivery in left:
                self._pending.setdefault(delivery.key, delivery)
        if left:
            log.info("notice.resumed", pending=len(left))
        self._thread = threading.Thread(target=self._run, daemon=True, name="codexd-courier")
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def add(self, delivery: Delivery) -> None:
        with self._lock:
            self._pending[delivery.key] = delivery
        self._wake.set()

    def stop(self, grace: float) -> None:
        """Stop handing out work; give deliveries under way `grace` seconds to be recorded."""
        self._stopping.set()
        self._wake.set()
        # Threads are waited for in real time, which an injected clock does not move.
        deadline = time.monotonic() + grace
        with self._lock:
            under_way = list(self._senders)
        for thread in [self._thread, *under_way]:
            if thread is not None:  # what is still under way stays in the outbox for the next daemon
                thread.join(max(0.0, deadline - time.monotonic()))

    # -- the courier's thread ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = self.pump()
            except Exception as exc:  # never die quietly: log it and go on
                log.error("notice.courier_failed", error=str(exc))
                wait = IDLE_WAIT
            self._wake.wait(wait)
            self._wake.clear()

    def pump(self) -> float:
        """Start every due delivery whose lane is free; return how long until the next is due."""
        mono, now = self._clock.monotonic(), self._clock.now().timestamp()
        wait = IDLE_WAIT
        with self._lock:
            due = sorted(self._pending.values(), key=lambda d: (d.created_at, d.key))
            for delivery in due:
                lane = self._lanes.setdefault(delivery.lane, Lane())
                if lane.busy:
                    continue
                if now - delivery.created_at >= self.policy.expire:
                    self._expire(delivery)
                elif lane.next_at <= mono:
                    lane.busy = True
                    self._start(delivery)
                else:
                    wait = min(wait, lane.next_at - mono)
        return max(0.0, wait)

    def _start(self, delivery: Delivery) -> None:
        sender = threading.Thread(target=self._deliver, args=(delivery,), daemon=True, name="codexd-notice")
        self._senders.add(sender)
        sender.start()

    def _deliver(self, delivery: Delivery) -> None:
        try:
            attempt = self._send(delivery, self.policy.timeout)
        except Exception as exc:  # a plugin bug is a failed attempt, not a dead thread
            attempt = Attempt(f"{type(exc).__name__}: {exc}")
        try:
            with self._lock:
                self._settle(delivery, attempt)
        except (StorageError, OSError) as exc:
            log.error("notice.outbox_failed", task_id=delivery.task_id, error=str(exc))
        except Exception as exc:  # a bug: logged, and the lane freed so its notices go on
            log.error("notice.settle_failed", task_id=delivery.task_id, exc_info=exc)
            with self._lock:
                self._lanes[delivery.lane].busy = False
        finally:
            with self._lock:
                self._senders.discard(threading.current_thread())
            self._wake.set()

    def _settle(self, delivery: Delivery, attempt: Attempt) -> None:
        lane = self._lanes[delivery.lane]
        lane.busy = False
        error = attempt.error
        if error is None:
            self.outbox.delivered(delivery)
            self._pending.pop(delivery.key, None)
            lane.failures, lane.next_at = 0, 0.0
            log.info("notice.sent", **_about(delivery), attempts=delivery.attempts + 1)
            return
        tried = self.outbox.attempted(delivery, error)
        if attempt.final:
            self._give_up(tried, error)
            return
        self._pending[delivery.key] = tried
        lane.failures += 1
        retry_in = self._retry_in(lane.failures, attempt)
        lane.next_at = self._clock.monotonic() + retry_in
        retry: dict[str, object] = {"attempts": tried.attempts, "retry_in": round(retry_in, 3)}
        if attempt.retry_after:
            retry["retry_after"] = attempt.retry_after
        log.warning("notice.failed", **_about(delivery), error=error, **retry)

    def _retry_in(self, failures: int, attempt: Attempt) -> float:
        """Our backoff, or longer when the endpoint asked for it (capped: RETRY_AFTER_MAX)."""
        wait = rules.backoff(failures, self.policy.backoff, self.policy.backoff_max)
        asked = answers.seconds(attempt.retry_after, self._clock.now())
        if asked is None:
            return wait
        return max(wait, min(asked, max(self.policy.backoff_max, RETRY_AFTER_MAX)))

    def _expire(self, delivery: Delivery) -> None:
        age = duration(self.policy.expire)
        tries = f"{delivery.attempts} attempts; last error: {delivery.last_error}"
        self._give_up(delivery, f"not delivered within {age} ({tries})")

    def _give_up(self, delivery: Delivery, reason: str) -> None:
        self.outbox.give_up(delivery, reason, self._clock.now().timestamp())
        self._pending.pop(delivery.key, None)
        log.error("notice.undeliverable", **_about(delivery), reason=reason)
        self._gave_up(delivery, reason)
