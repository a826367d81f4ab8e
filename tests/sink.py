"""A notification endpoint on 127.0.0.1: it records the JSON it gets, with the path it was posted to.

apprise's `json://` URLs post to it directly; Slack and Discord post to it when their
plugins' base URLs point here (`aimed`). `answer` decides each reply: an HTTP status, or
HANG to hold the request open until the sink closes (an endpoint that never answers).
An error answer carries `headers` (`Retry-After`). A success says "ok", as Slack's does.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = -1


@dataclass
class Sink:
    port: int = 0
    answer: Callable[[int], int] = lambda n: 200  # (request number from 1) -> status or HANG
    headers: dict[str, str] = field(default_factory=dict)  # sent with every error answer
    received: list[dict[str, Any]] = field(default_factory=list)  # what it accepted
    refused: int = 0  # requests answered with an error
    requests: int = 0
    closing: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def titles(self) -> list[str]:
        with self.lock:
            return [r["title"] for r in self.received]


def _handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with sink.lock:
                sink.requests += 1
                status = sink.answer(sink.requests)
            if status == HANG:
                sink.closing.wait(60)
                return
            if status < 300:
                with sink.lock:
                    sink.received.append({**json.loads(body), "path": self.path})
            else:
                with sink.lock:
                    sink.refused += 1
            reply = b"ok" if status < 300 else b""
            self.send_response(status)
            for name, value in ({} if status < 300 else sink.headers).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    return Handler


@contextlib.contextmanager
def aimed(sink: Sink) -> Iterator[None]:
    """Slack's and Discord's webhooks post to the sink for a while (codexd.notify.plugins)."""
    from codexd.notify import endpoints, plugins

    endpoints.load()  # registers codexd's plugins with apprise
    base = f"http://127.0.0.1:{sink.port}"
    saved = plugins.SlackWithFields.webhook_url, plugins.DiscordWithFields.notify_url
    plugins.SlackWithFields.webhook_url = f"{base}/services"
    plugins.DiscordWithFields.notify_url = f"{base}/api/webhooks"
    try:
        yield
    finally:
        plugins.SlackWithFields.webhook_url, plugins.DiscordWithFields.notify_url = saved


@contextlib.contextmanager
def serve(answer: Callable[[int], int] = lambda n: 200) -> Iterator[Sink]:
    sink = Sink(answer=answer)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(sink))
    server.daemon_threads = True
    sink.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.closing.set()
        server.shutdown()
        server.server_close()
