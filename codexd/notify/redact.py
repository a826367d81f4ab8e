"""Keeping notification URLs secret: a masked form for people, and a filter for text.

A webhook URL is a password. It is shown as `slack://****#3f2a` or
`json://127.0.0.1:8080/****#9c04`: what may be seen of it, and after `#` the first
characters of its `url_id`, so that two URLs on one host are told apart (the outbox's
file names end in the same id). Every log line passes through `redact()`, which replaces
any registered URL, and the token-like parts of it, wherever they appear (exception
traces included).
"""

from __future__ import annotations

import hashlib
import re
import threading
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "****"
# Desktop notifiers carry no secrets; their options (`?sound=Glass`) may be shown.
SECRETLESS = frozenset({"macosx", "dbus", "kde", "qt", "glib", "gnome", "windows"})
_TOKENISH = re.compile(r"[0-9A-Z_\-]")


SHOWN_ID = 4  # hex digits of a URL's id in its masked form


def url_id(url: str) -> str:
    """A short stable name for a URL that says nothing about it."""
    return hashlib.sha256(url.encode()).hexdigest()[:10]


def mask_url(url: str) -> str:
    """What may be shown of an apprise URL: its scheme, its host when that is an address, and
    the start of its id; a desktop notifier's URL, which holds no secret, whole."""
    if url.partition("://")[0].lower() in SECRETLESS and "://" in url:
        return url
    return f"{_masked(url)}#{url_id(url)[:SHOWN_ID]}"


def _masked(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep:
        return MASK
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{scheme}://{MASK}"
    user = f"{MASK}@" if parts.username or parts.password else ""
    if host and _is_address(host):
        rest = f"/{MASK}" if parts.path.strip("/") or parts.query or parts.fragment else ""
        return f"{scheme}://{user}{host}{port}{rest}"
    return f"{scheme}://{MASK}"


def _is_address(host: str) -> bool:
    """A DNS name or IP address, not a token in the host's place (`slack://T000/...`)."""
    return host == "localhost" or "." in host or ":" in host


def _is_secret_part(part: str) -> bool:
    # Long enough and token-like: "services" or "webhooks" are not secrets; "T1JJ3T3L2" is.
    return len(part) >= 20 or (len(part) >= 8 and _TOKENISH.search(part) is not None)


def secret_parts(url: str) -> set[str]:
    """The URL and each part of it that could carry a secret on its own in a message."""
    found = {url}
    try:
        parts = urlsplit(url)
        candidates = [parts.username or "", parts.password or ""]
        if parts.hostname and not _is_address(parts.hostname):
            candidates.append(parts.hostname)
        candidates += [unquote(seg) for seg in parts.path.split("/")]
        candidates += [value for _, value in parse_qsl(parts.query)]
    except ValueError:
        return found
    found.update(c for c in candidates if _is_secret_part(c))
    return found


class Redactor:
    """The secrets this process knows of; thread-safe, as log lines come from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[tuple[str, str], ...] = ()

    def add(self, urls: list[str]) -> None:
        """Register URLs (and their parts) as secret."""
        with self._lock:
            known = dict(self._secrets)
            for url in urls:
                if url.partition("://")[0].lower() not in SECRETLESS:
                    known.update((part, MASK) for part in secret_parts(url) if part not in known)
                    known[url] = mask_url(url)
            # Longest first, so that a whole URL is masked before its parts are.
            self._secrets = tuple(sorted(known.items(), key=lambda kv: len(kv[0]), reverse=True))

    def __call__(self, text: str) -> str:
        for secret, shown in self._secrets:
            if secret in text:
                text = text.replace(secret, shown)
        return text


redact = Redactor()  # one per process: the log formatter and the error boundary share it
