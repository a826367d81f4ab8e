"""What the agent wrote is shown, never obeyed: escape sequences (OSC 52, OSC 0, CSI, C1),
bidi overrides and markup from a hostile agent reach no terminal and no document alive."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CODEXD, wait_for
from tests.fault import escapes_codex

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

ESCAPES_CODEX = json.dumps([sys.executable, str(Path(escapes_codex.__file__))])
OBEYED = ("\x1b", "\x07", "\x9b", "\u202e", "\r", "\x08", "\x7f", "\x00")
MARKDOWN_ALIVE = ("[md](", "![i](", "\n# Injected")


def obeyed(text: str) -> list[str]:
    return [repr(c) for c in OBEYED if c in text]


def test_agent_escapes_are_shown_not_obeyed(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=ESCAPES_CODEX)
    running = daemon()
    done = env.codexd("start", "--instructions", "-", "--task-id", "hostile", input=b"say things\n")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: env.status("hostile")["status"] == "completed", 30, "the task to complete")
    assert running.proc.poll() is None

    log = (env.tasks / "hostile" / "progress.log").read_text("utf-8", "surrogateescape")
    assert "pwned" in log and "Agent:" in log
    assert obeyed(log) == []
    for args in (("logs", "hostile"), ("logs", "hostile", "-n", "50"), ("status", "hostile")):
        shown = env.codexd(*args)
        assert shown.returncode == 0, shown.stderr
        assert "pwned" in shown.stdout, args
        assert obeyed(shown.stdout) == [], args

    # A log written before codexd made controls visible (or by hand) is shown safely too.
    with (env.tasks / "hostile" / "progress.log").open("ab") as log_file:
        log_file.write(b"2025-10-31T11:50:00Z Agent: \x1b]0;older\x07 \xc2\x9b2J \x9b\n")
    for args in (("logs", "hostile"), ("logs", "hostile", "-n", "3")):
        shown = env.codexd(*args)
        assert "older" in shown.stdout and obeyed(shown.stdout) == [], args

    markdown = env.codexd("report", "hostile", "--format", "markdown").stdout
    assert "pwned" in markdown
    assert obeyed(markdown) == []
    fenced = re.compile(r"^(`{3,})text\n.*?\n\1$", re.DOTALL | re.MULTILINE)
    summary = fenced.search(markdown)
    assert summary is not None and "# Injected heading" in summary.group(0)  # shown as written
    outside = fenced.sub("", markdown)
    assert "pwned" in outside
    assert [alive for alive in MARKDOWN_ALIVE if alive in outside] == []
    assert re.findall(r"(?<!\\)<\w+", outside) == []  # tags only escaped: `\<img`
    page = env.codexd("report", "hostile", "--format", "html").stdout
    assert "pwned" in page
    assert obeyed(page) == []
    assert "<script" not in page and "<img" not in page


def test_raw_logs_into_a_pipe_stay_byte_exact(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=ESCAPES_CODEX)
    daemon()
    assert env.codexd("start", "--instructions", "-", "--task-id", "raw", input=b"go\n").returncode == 0
    wait_for(lambda: env.status("raw")["status"] == "completed", 30, "the task to complete")
    piped = subprocess.run(
        [*CODEXD, "logs", "raw", "--raw"], env=env.vars, capture_output=True, timeout=30, check=True
    )
    assert piped.stdout == (env.tasks / "raw" / "events.jsonl").read_bytes()


def on_a_terminal(env, *args: str) -> bytes:
    """What `codexd ARGS` prints when its stdout is a terminal."""
    main, side = pty.openpty()
    proc = subprocess.Popen([*CODEXD, *args], env=env.vars, stdout=side, stderr=subprocess.DEVNULL)
    os.close(side)
    seen = b""
    try:
        while chunk := os.read(main, 65536):
            seen += chunk
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(main)
    assert proc.wait(timeout=30) == 0
    return seen


def test_raw_logs_on_a_terminal_show_controls(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=ESCAPES_CODEX)
    daemon()
    assert env.codexd("start", "--instructions", "-", "--task-id", "tty", input=b"go\n").returncode == 0
    wait_for(lambda: env.status("tty")["status"] == "completed", 30, "the task to complete")
    raw = (env.tasks / "tty" / "events.jsonl").read_bytes()
    assert "\u202e".encode() in raw and "\x9b".encode() in raw  # held as they came
    seen = on_a_terminal(env, "logs", "tty", "--raw").decode("utf-8", "surrogateescape")
    assert "pwned" in seen and "\\u202e" in seen
    assert obeyed(seen.replace("\r\n", "\n")) == []  # the terminal itself turns \n into \r\n
