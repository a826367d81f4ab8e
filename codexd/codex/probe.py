"""Has the installed Codex judge the command line codexd would give it, without a model turn.

First `codex exec ... --help`: Codex parses every argument (unknown or repeated flags, bad
values) and stops. Then the same command really starts, against a model provider whose
address refuses connections, with --ephemeral (no session kept): Codex reads its settings
with the arguments (`-c` values, features, profiles) and reports `turn.started`, where the
probe stops it. No model is ever asked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from codexd.codex import outcome, process

TIMEOUT = 20.0
PROVIDER = "codexd_doctor"


def _argv(command: list[str], args: list[str], login_shell: bool, where: Path) -> list[str]:
    return process.exec_argv(
        command, args, task_dir=where, cwd=where, login_shell=login_shell, output_schema=None
    )


def _reason(stderr: str, code: int | None) -> str:
    return outcome.stderr_reason(stderr.splitlines()) or f"exit {code}"


def parse_error(command: list[str], args: list[str], login_shell: bool) -> str | None:
    """What Codex's argument parser says against the command line, or None if it takes it."""
    with tempfile.TemporaryDirectory(prefix="codexd-doctor-") as scratch:
        argv = [*_argv(command, args, login_shell, Path(scratch)), "--help"]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, cwd=scratch,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return None if done.returncode == 0 else _reason(done.stderr, done.returncode)


def _closed_port() -> socket.socket:
    """A bound, never listening socket: connections to its port are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def _provider(port: int) -> list[str]:
    table = (
        f'{{name="codexd doctor",base_url="http://127.0.0.1:{port}/v1",wire_api="responses",'
        "request_max_retries=0,stream_max_retries=0}"
    )
    return ["-c", f'model_provider="{PROVIDER}"', "-c", f"model_providers.{PROVIDER}={table}"]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the wrapper and its native child


def start_error(command: list[str], args: list[str], login_shell: bool) -> str | None:
    """What Codex says when it starts with the command line, or None if it reaches a turn."""
    with tempfile.TemporaryDirectory(prefix="codexd-doctor-") as scratch, _closed_port() as port:
        where = Path(scratch)
        probe = [*args, "--ephemeral", *_provider(port.getsockname()[1])]
        with (where / "stderr").open("w+b") as stderr:
            proc = subprocess.Popen(
                _argv(command, probe, login_shell, where), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, cwd=where, start_new_session=True,
            )  # fmt: skip
            timer = threading.Timer(TIMEOUT, _stop, [proc])
            timer.start()
            try:
                started = _reaches_a_turn(proc)
            finally:
                timer.cancel()
                _stop(proc)
                code = proc.wait()
            stderr.seek(0)
            said = stderr.read().decode("utf-8", "replace")
    return None if started else _reason(said, code)


def _reaches_a_turn(proc: subprocess.Popen[bytes]) -> bool:
    assert proc.stdin is not None and proc.stdout is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(b"codexd doctor: checking the arguments; nothing to do.\n")
        proc.stdin.close()
    return any(b'"turn.started"' in line for line in proc.stdout)
