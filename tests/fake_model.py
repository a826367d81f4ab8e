"""A small fake of the model endpoint that the real Codex CLI talks to in tests.

Codex posts ``/v1/responses`` and reads a server-sent event stream. The server is
stateless: it finds a scenario name in the request (``SCENARIO: name`` in the prompt)
and answers step ``i``, where ``i`` is how many tool results the request already carries.
So concurrent tasks and resumed sessions each get the right answer.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_SCENARIO = re.compile(r"SCENARIO: ([A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Call:
    """The model asks Codex to run a shell command."""

    cmd: str
    yield_ms: int = 30_000


@dataclass(frozen=True)
class Say:
    """The model answers with a final message."""

    text: str


@dataclass(frozen=True)
class Fail:
    """The endpoint answers with an HTTP error."""

    status: int = 500


@dataclass(frozen=True)
class Hang:
    """The stream opens and then says nothing (a stalled model)."""


@dataclass(frozen=True)
class Once:
    """`first` the first `times` times this step is reached in a thread, `then` after.

    A thread is Codex's session (its requests carry the thread id as prompt_cache_key), so
    a resumed session sees `then` where the first run saw `first`.
    """

    first: Answer
    then: Answer
    times: int = 1


@dataclass(frozen=True)
class Tool:
    """The model calls any tool Codex offers by name, e.g. request_user_input or update_plan."""

    name: str
    arguments: str  # JSON text, as the model sends it; $AGENT_ID: the subagent spawned last
    namespace: str | None = None  # e.g. multi_agent_v1 for spawn_agent and wait_agent


@dataclass(frozen=True)
class Limit:
    """The account's usage limit is reached: HTTP 429 with the body the ChatGPT backend sends
    (`error.type` usage_limit_reached, `resets_at` in epoch seconds, `resets_in_seconds`), which
    Codex turns into "You've hit your usage limit. Try again at 3:05 PM." (`resets_in` None:
    no reset time, and Codex says "Try again later.")."""

    resets_in: float | None = None  # seconds from the request to the reset
    plan_type: str = "plus"
    # The rate-limit headers the backend sends with it (x-codex-primary-*): Codex writes them,
    # to the second, in the rollout's token_count; its message gives only the minute.
    headers: bool = True


Step = Call | Say | Fail | Hang | Tool | Once | Limit
Answer = Call | Say | Fail | Hang | Tool | Limit


@dataclass
class FakeModel:
    scenarios: dict[str, list[Step]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    seen: dict[tuple[str, int], int] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # sent with every answer (rate_limit_headers)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def step_for(self, body: dict[str, Any]) -> Answer:
        text = json.dumps(body.get("input", []))
        found = _SCENARIO.findall(text)
        if not found:
            return Say("no scenario named in the prompt")
        steps = self.scenarios[found[0]]
        done = sum(1 for item in body.get("input", []) if _answers_a_call(item))
        index = min(done, len(steps) - 1)
        step = steps[index]
        if isinstance(step, Tool):
            return _filled(step, body)
        if not isinstance(step, Once):
            return step
        key = (str(body.get("prompt_cache_key")), index)
        with self._lock:
            self.seen[key] = self.seen.get(key, 0) + 1
            return step.first if self.seen[key] <= step.times else step.then

    def prompts(self) -> list[str]:
        """The user messages of every request, in order (to see a continuation prompt)."""
        found = []
        for body in self.requests:
            for item in body.get("input", []):
                if item.get("role") == "user":
                    found.append(json.dumps(item.get("content")))
        return found

    def write_codex_home(self, home: Path) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            'model = "gpt-5.1-codex"\n'
            'model_provider = "mock"\n'
            "[model_providers.mock]\n"
            'name = "mock"\n'
            f'base_url = "http://127.0.0.1:{self.port}/v1"\n'
            'wire_api = "responses"\n'
            'env_key = "MOCK_API_KEY"\n'
            "request_max_retries = 0\n"
            "stream_max_retries = 0\n"
            "supports_websockets = false\n"
        )
        return home


def _answers_a_call(item: dict[str, Any]) -> bool:
    """A tool result for one of the model's calls; Codex's own goal_objective output has no call id."""
    return item.get("type") == "function_call_output" and bool(item.get("call_id"))


def _filled(step: Tool, body: dict[str, Any]) -> Tool:
    """The call with $AGENT_ID replaced by the id spawn_agent last returned in this thread."""
    if "$AGENT_ID" not in step.arguments:
        return step
    spawned = [_agent_id(item) for item in body.get("input", []) if _answers_a_call(item)]
    found = [agent for agent in spawned if agent]
    return replace(step, arguments=step.arguments.replace("$AGENT_ID", found[-1] if found else "none"))


def _agent_id(item: dict[str, Any]) -> str | None:
    try:
        output = json.loads(item.get("output") or "")
    except (TypeError, ValueError):
        return None
    return str(output["agent_id"]) if isinstance(output, dict) and "agent_id" in output else None


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


# What every answered request charges (a Hang or a Fail charges nothing); Codex adds these up.
CHARGE = {"input_tokens": 1000, "cached_tokens": 200, "output_tokens": 100, "reasoning_tokens": 10}
CHARGED_TOTAL = CHARGE["input_tokens"] + CHARGE["output_tokens"]


def _usage() -> dict[str, Any]:
    return {
        "input_tokens": CHARGE["input_tokens"],
        "input_tokens_details": {"cached_tokens": CHARGE["cached_tokens"]},
        "output_tokens": CHARGE["output_tokens"],
        "output_tokens_details": {"reasoning_tokens": CHARGE["reasoning_tokens"]},
        "total_tokens": CHARGED_TOTAL,
    }


def _output_item(step: Call | Say | Tool, n: int) -> dict[str, Any]:
    if isinstance(step, Tool):
        call = {"type": "function_call", "name": step.name, "arguments": step.arguments, "call_id": f"c{n}"}
        return call if step.namespace is None else {**call, "namespace": step.namespace}
    if isinstance(step, Call):
        args = {"cmd": step.cmd, "yield_time_ms": step.yield_ms}
        return {
            "type": "function_call",
            "name": "exec_command",
            "arguments": json.dumps(args),
            "call_id": f"c{n}",
        }
    return {
        "type": "message",
        "role": "assistant",
        "id": f"m{n}",
        "content": [{"type": "output_text", "text": step.text}],
    }


def rate_limit_headers(
    primary: tuple[float, int, int] | None, secondary: tuple[float, int, int] | None = None
) -> dict[str, str]:
    """The headers a ChatGPT plan's answers carry, which Codex turns into the rollout's
    `rate_limits`: (used percent, window minutes, reset at in epoch seconds) per window."""
    found = {}
    for name, window in (("primary", primary), ("secondary", secondary)):
        if window is not None:
            used, minutes, reset_at = window
            found[f"x-codex-{name}-used-percent"] = str(used)
            found[f"x-codex-{name}-window-minutes"] = str(minutes)
            found[f"x-codex-{name}-reset-at"] = str(reset_at)
    return found


def _send_headers(handler: BaseHTTPRequestHandler, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        handler.send_header(name, value)


def _handler(model: FakeModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            model.requests.append(body)
            step = model.step_for(body)
            if isinstance(step, Limit):
                self._answer_json(429, _limit_body(step), _limit_headers(step))
                return
            if isinstance(step, Fail):
                payload = b'{"error":{"message":"fake model error","type":"server_error"}}'
                self.send_response(step.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            self.send_response(200)
            _send_headers(self, model.headers)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            n = len(model.requests)
            self.wfile.write(_sse("response.created", {"response": {"id": f"r{n}"}}))
            self.wfile.flush()
            if isinstance(step, Hang):
                while not model._stop.wait(0.1):
                    pass
                return
            self.wfile.write(_sse("response.output_item.done", {"item": _output_item(step, n)}))
            self.wfile.write(_sse("response.completed", {"response": {"id": f"r{n}", "usage": _usage()}}))
            self.wfile.flush()
            self.close_connection = True

        def _answer_json(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def _limit_body(step: Limit) -> bytes:
    error: dict[str, Any] = {
        "type": "usage_limit_reached",
        "message": "The usage limit has been reached",
        "plan_type": step.plan_type,
    }
    if step.resets_in is not None:
        error["resets_at"] = int(time.time() + step.resets_in)
        error["resets_in_seconds"] = int(step.resets_in)
    return json.dumps({"error": error}).encode()


def _limit_headers(step: Limit) -> dict[str, str]:
    if step.resets_in is None or not step.headers:
        return {}
    return {
        "x-codex-primary-used-percent": "100",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(int(time.time() + step.resets_in)),
        "x-codex-primary-reset-after-seconds": str(int(step.resets_in)),
    }


@contextmanager
def serve(scenarios: dict[str, list[Step]]) -> Iterator[FakeModel]:
    model = FakeModel(scenarios=scenarios)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(model))
    server.daemon_threads = True
    model.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield model
    finally:
        model._stop.set()
        server.shutdown()
        server.server_close()
        time.sleep(0)
