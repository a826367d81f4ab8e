"""Notification endpoints: apprise URLs, their tags, whether they can work here, and sending.

apprise is imported on first use (it costs about 0.3 s), so a daemon without
notification URLs never loads it. Its own log lines are kept out of ours: the reason a
delivery failed comes back from the result apprise returns, masked, in our own log line.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from codexd.notify import answers
from codexd.notify.redact import mask_url, redact

APP_ID = "codexd"
# `ops,team=slack://...`: the URL hears only tasks that ask for one of its tags.
_TAGGED = re.compile(r"^\s*(?P<tags>[A-Za-z0-9_][A-Za-z0-9_, -]*)=\s*(?P<url>[A-Za-z0-9+._-]{1,32}://.*)$")
_lock = threading.Lock()


class NoticeKind(StrEnum):
    """apprise's notify types, which Slack and Discord colour: green, red, yellow, blue."""

    SUCCESS = "success"
    FAILURE = "failure"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Field:
    """One named value of a notice: a count (short, shown side by side) or a sentence."""

    name: str
    value: str
    short: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "short": self.short}


class Message(Protocol):
    """What is sent (a notice, or a delivery of one): `text` for plain services; Slack gets
    `lead` and Discord `markdown` (the lead, as Markdown), each with `fields` beside it."""

    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def lead(self) -> str: ...
    @property
    def markdown(self) -> str: ...
    @property
    def kind(self) -> NoticeKind: ...
    @property
    def fields(self) -> tuple[Field, ...]: ...


@dataclass(frozen=True)
class Endpoint:
    url: str
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def shown(self) -> str:
        prefix = ",".join(sorted(self.tags)) + "=" if self.tags else ""
        return prefix + mask_url(self.url)

    def hears(self, task_tags: frozenset[str]) -> bool:
        return not self.tags or bool(self.tags & task_tags)


def parse(entry: str) -> Endpoint:
    """A `notify.urls` entry: a URL, optionally preceded by `tag,tag=`."""
    found = _TAGGED.match(entry)
    if found is None:
        return Endpoint(entry.strip())
    tags = frozenset(t.strip() for t in found["tags"].split(",") if t.strip())
    return Endpoint(found["url"].strip(), tags)


@dataclass(frozen=True)
class Problem:
    url: str
    text: str
    platform: bool  # True: a valid URL this machine cannot serve (macosx:// on Linux)

    def line(self) -> str:
        return f"{mask_url(self.url)}: {self.text}"


def load() -> Any:
    """apprise, loaded once, its log kept quiet and codexd's plugins registered."""
    with _lock:
        quiet = logging.getLogger("apprise")
        if not quiet.handlers:
            quiet.propagate = False  # reasons come back in the result; see `send`
            quiet.addHandler(logging.NullHandler())
            quiet.setLevel(logging.WARNING)  # the result keeps only what passes this level
        import apprise

        from codexd.notify import plugins

        plugins.register()
        answers.install()
        return apprise


def problem(url: str) -> Problem | None:
    """None when apprise can use the URL on this machine; else what is wrong and what to do."""
    apprise = load()
    if apprise.Apprise.instantiate(url) is not None:
        return None
    scheme = url.partition("://")[0].lower()
    plugins = apprise.manager_plugins.NotificationManager()
    if "://" not in url or scheme not in plugins.schemas():
        return Problem(url, f"unknown kind of URL {scheme!r}: see apprise's list of services", False)
    plugin = plugins[scheme]
    if not plugin.enabled:
        needs = redact(str(plugin.requirements.get("details") or "missing system support"))
        return Problem(url, f"cannot work on this machine ({needs}); it is skipped here", True)
    return Problem(url, f"is not a valid {plugin.service_name} URL: check it against apprise's docs", False)


def judge(entries: list[str]) -> list[tuple[Endpoint, Problem | None]]:
    """Each `notify.urls` entry, parsed, with what keeps it from working here (None: nothing)."""
    found = [parse(entry) for entry in entries]
    return [(endpoint, problem(endpoint.url)) for endpoint in found]


def _with_query(url: str, key: str, value: str) -> str:
    parts = urlsplit(url)
    if any(p.split("=")[0] == key for p in parts.query.split("&") if p):
        return url
    return url + ("&" if parts.query else ("" if url.endswith("?") else "?")) + f"{key}={value}"


@dataclass(frozen=True)
class Attempt:
    error: str | None = None  # None: delivered
    final: bool = False  # the URL can never work here: trying again is pointless
    retry_after: str | None = None  # what a 429 or 503 answer's Retry-After said


def send(url: str, message: Message, timeout: float) -> Attempt:
    """Deliver one notice to one URL, waiting at most `timeout` seconds for it."""
    apprise = load()
    asset = apprise.AppriseAsset(app_id=APP_ID, app_desc="codexd task notices", service_timeout=timeout)
    plugin = apprise.Apprise.instantiate(url, asset=asset)
    if plugin is None:
        found = problem(url)
        return Attempt(found.text if found else "the URL cannot be used", final=True)
    body, body_format = message.text, apprise.NotifyFormat.TEXT
    if plugin.service_name == "Discord":  # an embed: the lead as its description, and the fields
        plugin = apprise.Apprise.instantiate(_with_query(url, "format", "markdown"), asset=asset)
        body, body_format = message.markdown, apprise.NotifyFormat.MARKDOWN
    elif message.fields and message.lead and hasattr(plugin, "notice_fields"):
        body = message.lead  # the counts go as fields, not again in the text
    if hasattr(plugin, "notice_fields"):  # codexd.notify.plugins
        plugin.notice_fields = message.fields
    sender = apprise.Apprise(asset=asset)
    sender.add(plugin)
    kind_ = apprise.NotifyType(message.kind)
    with answers.listening() as asked:
        result = sender.notify(body=body, title=message.title, notify_type=kind_, body_format=body_format)
    if result:
        return Attempt()
    error = redact(_reason(result) or f"{plugin.service_name} did not accept it")
    return Attempt(error, retry_after=asked[-1] if asked else None)


def _reason(result: Any) -> str | None:
    messages = [entry.message for service in result for entry in service.logs()]
    return messages[-1] if messages else None
