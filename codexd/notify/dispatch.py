"""Notices for the daemon: task events in, outbox entries out, and the courier kept alive.

`announce` is a listener of the ledger, called on the loop's thread when a task's state
changes. It renders the notice once, writes one outbox entry per URL that should hear of
it, and leaves delivery to the courier's threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from codexd.clock import Clock
from codexd.config.settings import NotifySettings
from codexd.errors import CodexdError
from codexd.notify import endpoints, notices
from codexd.notify.courier import Courier
from codexd.notify.endpoints import Attempt, Endpoint
from codexd.notify.outbox import Delivery, Outbox
from codexd.notify.redact import mask_url, redact, url_id
from codexd.tasks import frontmatter, intake
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskEvent
from codexd.tasks.store import INSTRUCTIONS, TaskStore

log = structlog.get_logger()
ACCOUNT_EVENTS = frozenset({"usage_limit", "usage_resumed"})  # what `notify.account` adds
Report = Callable[[str, str], None]  # (task_id, line for its progress.log)


def usable(entries: list[str]) -> list[Endpoint]:
    """The configured endpoints that can work here; each one that cannot gets one warning."""
    judged = endpoints.judge(entries)
    redact.add([endpoint.url for endpoint, _ in judged])
    good = []
    for endpoint, problem in judged:
        if problem is None:
            good.append(endpoint)
        else:
            log.warning("notify.url_skipped", url=endpoint.shown, problem=problem.text)
    return good


def _deliver(delivery: Delivery, timeout: float) -> Attempt:
    return endpoints.send(delivery.url, delivery, timeout)


class Notifications:
    def __init__(self, settings: NotifySettings, tasks: TaskStore, clock: Clock, report: Report):
        self.tasks = tasks
        self.clock = clock
        self.outbox = Outbox(tasks.root)
        self._report = report
        self.courier = Courier(self.outbox, settings, _deliver, self._gave_up, clock)
        self.events: frozenset[str] = frozenset()
        self.endpoints: list[Endpoint] = []
        # Who hears a task, from its front matter as the daemon took it: an agent running in its
        # task folder can rewrite instructions.md, never its listeners.
        self._listeners: dict[str, tuple[frozenset[str], list[str]]] = {}
        self.configure(settings)

    def configure(self, settings: NotifySettings) -> None:
        """At start and on every reload: which events, which URLs, what retry policy."""
        self.events = frozenset(settings.events) | (ACCOUNT_EVENTS if settings.account else frozenset())
        self.endpoints = usable([u.get_secret_value() for u in settings.urls]) if settings.urls else []
        self.courier.policy = settings

    def start(self) -> None:
        self.outbox.open()
        self.courier.start()

    def stop(self, grace: float) -> None:
        self.courier.stop(grace)

    def keep_alive(self) -> None:
        """Side activities are supervised too: a courier that died is logged and restarted."""
        if not self.courier.alive:
            log.error("notice.courier_restarted")
            self.courier.start()

    def announce(self, status: TaskStatus, said: str) -> None:
        event = TaskEvent(said)  # a ledger event name
        if event == TaskEvent.QUEUED:
            self._listeners[status.task_id] = self._hearing(status)
        if event not in self.events:
            return
        urls = self._urls_for(status)
        if not urls:
            return
        now = self.clock.now()
        notice, created = notices.render(status, event, now), now.timestamp()
        for url in urls:
            delivery = Delivery(
                key=f"{notice.key}.{url_id(url)}",
                task_id=status.task_id,
                event=event,
                url=url,
                title=notice.title,
                text=notice.text,
                markdown=notice.markdown,
                kind=notice.kind,
                created_at=created,
                lead=notice.lead,
                fields=notice.fields,
            )
            if self.outbox.put(delivery):
                self.courier.add(delivery)

    def _urls_for(self, status: TaskStatus) -> list[str]:
        """The configured URLs that hear this task (by its tags), then the task's own."""
        if status.task_id not in self._listeners:  # a task this daemon found at start-up
            self._listeners[status.task_id] = self._hearing(status)
        tags, own = self._listeners[status.task_id]
        urls = [e.url for e in self.endpoints if e.hears(tags)]
        return list(dict.fromkeys([*urls, *own]))

    def _hearing(self, status: TaskStatus) -> tuple[frozenset[str], list[str]]:
        """The task's tags, recorded when it was taken, and its own URLs, which are secrets
        and so are read from its front matter (only when it has some)."""
        taken = status.taken
        if taken is not None and not taken.own_urls:
            return frozenset(taken.notify_tags), []
        fields = self._front_matter(status.task_id)
        own = [str(u) for u in fields.get("notify_urls", ())]
        redact.add(own)
        tags = taken.notify_tags if taken is not None else fields.get("notify_tags", ())
        return frozenset(str(t) for t in tags), own

    def _front_matter(self, task_id: str) -> dict[str, Any]:
        try:
            # Capped, and never through a link: an agent running in its task folder can plant one.
            raw = intake.read_instruction_file(self.tasks.file(task_id, INSTRUCTIONS), follow=False)
            return frontmatter.parse(raw).fields
        except (OSError, CodexdError):
            return {}

    def _gave_up(self, delivery: Delivery, reason: str) -> None:
        self._report(
            delivery.task_id, f"Notice undeliverable: {delivery.event} to {mask_url(delivery.url)}: {reason}"
        )
