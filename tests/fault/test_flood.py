"""A task that floods 100 MB of short events while another short task is submitted: the
daemon takes the flood in bounded steps, so its memory stays flat, the short task is not
held up, and the flood's progress is all recorded."""

from __future__ import annotations

import json
import sys
import threading
import time

import psutil
import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

FLOOD_MB = 100
FAKE_CODEX = """
import os, sys
sys.stdin.buffer.read()  # the instructions
out = sys.stdout.buffer
out.write(b'{"type":"thread.started","thread_id":"th-%d"}\\n{"type":"turn.started"}\\n' % os.getpid())
if os.environ["CODEXD_TASK_DIR"].endswith("flood"):
    line = b'{"type":"item.completed","item":{"id":"i","type":"agent_message","text":"%s"}}\\n' % (b"w" * 200)
    block = line * ((1 << 20) // len(line))
    for _ in range(int(os.environ["FLOOD_MB"])):
        out.write(block)
out.write(b'{"type":"item.completed","item":{"id":"e","type":"agent_message","text":"the end"}}\\n')
out.write(b'{"type":"turn.completed","usage":{}}\\n')
"""
EVENTS_PER_MB = (1 << 20) // len(
    b'{"type":"item.completed","item":{"id":"i","type":"agent_message","text":""}}\n' + b"w" * 200
)


class Peak:
    """The largest resident memory of a process, sampled every 50 ms."""

    def __init__(self, pid: int):
        self.proc, self.rss, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.rss = max(self.rss, self.proc.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.rss


def start(env, task_id: str) -> float:
    began = time.monotonic()
    done = env.codexd("start", "--instructions", "-", "--task-id", task_id, input=b"Do it.\n")
    assert done.returncode == 0, done.stderr
    return began


def ended(env, task_id: str) -> bool:
    try:
        return env.status(task_id)["status"] in ("completed", "failed")
    except (FileNotFoundError, ValueError):
        return False


def test_a_flood_of_events_keeps_memory_flat_and_holds_up_no_other_task(env, daemon):
    script = env.root / "flooder.py"
    script.write_text(FAKE_CODEX)
    env.set(
        CODEXD_CODEX__COMMAND=json.dumps([sys.executable, str(script)]),
        FLOOD_MB=str(FLOOD_MB),
        CODEXD_CODEX__ENV='["FLOOD_MB"]',
    )
    d = daemon()
    peak = Peak(d.proc.pid)
    start(env, "flood")
    events = env.tasks / "flood" / "events.jsonl"
    wait_for(lambda: events.exists() and events.stat().st_size > FLOOD_MB << 19, 20, "the flood")
    began = start(env, "quick")
    wait_for(lambda: ended(env, "quick"), 30, "the quick task to end")
    latency = time.monotonic() - began
    wait_for(lambda: ended(env, "flood"), 60, "the flood to be all read")
    rss = peak.stop()
    print(f"\nquick task submitted to ended: {latency:.2f} s; daemon peak RSS {rss / 1e6:.0f} MB")
    assert env.status("quick")["status"] == "completed"
    flood = env.status("flood")
    assert flood["status"] == "completed" and flood["daemon"]["events"] == events.stat().st_size
    log = (env.tasks / "flood" / "progress.log").read_text()
    assert log.count("Agent: www") == FLOOD_MB * EVENTS_PER_MB and "Agent: the end" in log
    assert latency < 5  # submitted, started, followed and ended while the flood is read
    assert rss < 300e6
