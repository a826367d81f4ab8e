"""The loop's inbox: what other threads tell it, each a small message.

A thread (the folder watchers, a waiter per process, the health job, a signal handler, the
courier) only posts; the loop takes the messages at its next round and acts on them.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator
from dataclasses import dataclass

from codexd.daemon.checkup import Finding


@dataclass(frozen=True)
class Wake:
    """Nothing to act on: a round of work now (a signal arrived)."""


@dataclass(frozen=True)
class Changed:
    """The spool or the requests folder changed: they are rescanned now."""


@dataclass(frozen=True)
class Grown:
    """These running tasks wrote to their events, reports or stderr; these had their folder
    removed, moved or its mode changed (posted by daemon/taskwatch)."""

    task_ids: frozenset[str]
    touched: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Exited:
    """A task's process ended (posted by the thread that waited for it)."""

    task_id: str
    run: int
    code: int | None


@dataclass(frozen=True)
class Findings:
    """What the periodic health check found, for the loop to judge against what it knows."""

    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class Note:
    """A line for a task's progress.log from another thread (an undeliverable notice)."""

    task_id: str
    line: str


@dataclass(frozen=True)
class Assigned:
    """The shared queue handed this daemon a task (posted by the queue's thread, codexd/queue)."""

    task_id: str


Message = Wake | Changed | Exited | Findings | Note | Grown | Assigned


class Inbox:
    def __init__(self) -> None:
        # SimpleQueue: put() is reentrant, so a signal handler that posts while the loop is
        # inside get() cannot deadlock it (queue.Queue holds a lock there).
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._pending: list[Message] = []

    def put(self, message: Message) -> None:
        self._queue.put(message)

    def wait(self, timeout: float) -> None:
        """Until a message comes, or `timeout` seconds."""
        with contextlib.suppress(queue.Empty):
            self._pending.append(self._queue.get(timeout=timeout))

    def drain(self) -> Iterator[Message]:
        while self._pending:
            yield self._pending.pop(0)
        while True:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return
