"""A task that forks 50 children ignoring SIGTERM, and notification endpoints that hang or fail."""

from __future__ import annotations

import json
import os
import statistics
import time

import psutil
import pytest

from tests import sink
from tests.conftest import ROOT, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]

FORKER = """#!/bin/bash
# 50 children that ignore SIGTERM (an ignored signal stays ignored across exec), then silence.
for i in $(seq 50); do bash -c 'trap "" TERM; exec sleep 600' & done
printf '{"type":"thread.started","thread_id":"forky-%s"}\\n{"type":"turn.started"}\\n' "$$"
trap "" TERM
wait
"""


def tree_of(env, task_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("CODEXD_TASK_DIR") == str(env.tasks / task_id):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def forker(env):
    script = env.root / "forker"
    script.write_text(FORKER)
    script.chmod(0o755)
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(script)]), CODEXD_DAEMON__STOP_GRACE="1")


def start(env, task_id: str) -> None:
    done = env.codexd("start", "--instructions", "-", "--task-id", task_id, input=b"Do it.\n")
    assert done.returncode == 0, done.stderr


@pytest.mark.usefixtures("forker")
def test_stop_ends_a_tree_of_51_that_ignores_sigterm(env, daemon):
    daemon()
    start(env, "forky")
    wait_for(lambda: len(tree_of(env, "forky")) >= 51, 20, "the 51 processes")
    stopped = env.codexd("stop", "forky")
    assert stopped.returncode == 0 and stopped.stdout == "forky cancelled\n", stopped.stderr
    wait_for(lambda: not tree_of(env, "forky"), 10, "nothing left of the tree")


@pytest.mark.usefixtures("forker")
def test_stall_recovery_ends_each_tree_of_51(env, daemon):
    env.set(CODEXD_HEALTH__STALL_TIMEOUT="1", CODEXD_HEALTH__MAX_RESTARTS="1")
    daemon()
    start(env, "stuck")
    final = wait_for(
        lambda: (
            (s := env.status("stuck"))["status"] == "failed" and s if (env.tasks / "stuck").exists() else None
        ),
        60,
        "the task to fail after its restart",
    )
    assert final["restarts"] == 1 and final["stalls"] == 2
    wait_for(lambda: not tree_of(env, "stuck"), 10, "nothing left of either tree")


def started_latencies(env, prefix: str, count: int) -> list[float]:
    found = []
    for i in range(count):
        hidden = env.spool / f".{prefix}{i}.tmp"
        hidden.write_text("Do it.\n")
        began = time.time()
        os.rename(hidden, env.spool / f"{prefix}{i}.md")
        stamp = env.tasks / f"{prefix}{i}" / "bench.started"
        text = wait_for(lambda stamp=stamp: stamp.exists() and stamp.read_text().strip(), 10, "a start")
        found.append(float(text) - began)
    return found


def test_endpoints_that_hang_or_fail_leave_supervision_as_fast(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(ROOT / "bench" / "fake-codex")]), CODEXD_MAX_PARALLEL="16")
    env.spool.mkdir(mode=0o700)
    quiet = daemon()
    calm = started_latencies(env, "calm", 10)
    assert quiet.stop() == 0
    with sink.serve(lambda n: sink.HANG) as dead, sink.serve(lambda n: 500) as failing:
        env.set(
            CODEXD_NOTIFY__URLS=json.dumps([dead.url(), failing.url()]),
            CODEXD_NOTIFY__TIMEOUT="30",
            CODEXD_NOTIFY__BACKOFF="0.05",
            CODEXD_NOTIFY__BACKOFF_MAX="0.1",
        )
        daemon()
        for n in range(10, 20):  # the notices of these tasks hang or fail while the next ones start
            (env.spool / f".w{n}.tmp").write_text("Do it.\n")
            os.rename(env.spool / f".w{n}.tmp", env.spool / f"w{n}.md")
        wait_for(lambda: dead.requests >= 1 and failing.refused >= 5, 20, "the endpoints to be busy failing")
        stormy = started_latencies(env, "stormy", 10)
    calm_ms, stormy_ms = statistics.median(calm) * 1000, statistics.median(stormy) * 1000
    print(
        f"\nspool rename to Codex started, median: {calm_ms:.1f} ms without notices, {stormy_ms:.1f} ms "
        f"with one endpoint hanging and one answering 500 ({failing.refused} refusals meanwhile)"
    )
    assert stormy_ms < calm_ms + 50
