"""SIGKILL the daemon at 20 random moments of a 50-task run: nothing is lost, doubled or torn."""

from __future__ import annotations

import json
import random
import signal
import time

import psutil
import pytest

from tests import sink
from tests.conftest import ROOT, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180)]
TASKS, KILLS = 50, 20


def statuses(env) -> dict[str, dict]:
    """Every status.json, each of which must be whole JSON at any moment."""
    found = {}
    for path in env.tasks.glob("*/status.json"):
        found[path.parent.name] = json.loads(path.read_bytes())  # a torn file raises here
    return found


def task_processes(env) -> list[psutil.Process]:
    alive = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("CODEXD_TASK_DIR", "").startswith(str(env.root)):
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


def test_sigkill_at_random_moments_loses_nothing(env, daemon):
    rng = random.Random(7)
    with sink.serve() as hook:
        env.set(
            CODEXD_CODEX__COMMAND=json.dumps([str(ROOT / "bench" / "fake-codex")]),
            BENCH_CODEX_SECONDS="1.5",
            CODEXD_CODEX__ENV='["BENCH_CODEX_SECONDS"]',  # the agent sees only what is named
            CODEXD_MAX_PARALLEL="6",
            CODEXD_NOTIFY__URLS=json.dumps([hook.url()]),
            CODEXD_NOTIFY__EVENTS='["completed"]',
            CODEXD_NOTIFY__BACKOFF="0.1",
        )
        env.spool.mkdir(mode=0o700)
        for i in range(TASKS):
            (env.spool / f".k{i:02d}.tmp").write_text("Do it.\n")
            (env.spool / f".k{i:02d}.tmp").rename(env.spool / f"k{i:02d}.md")
        moments = []
        for _ in range(KILLS):
            running = daemon()
            time.sleep(rng.uniform(0.02, 0.4))
            moments.append(len([s for s in statuses(env).values() if s["status"] == "completed"]))
            running.signal(signal.SIGKILL)
            running.proc.wait(10)
            statuses(env)  # nothing torn, right after a kill
        daemon()
        done = wait_for(
            lambda: (
                (s := statuses(env))
                and len(s) == TASKS
                and all(t["status"] == "completed" for t in s.values())
                and s
            ),
            90,
            "every task to complete",
        )
        wait_for(lambda: len({n["title"] for n in hook.received}) == TASKS, 30, "a notice for every task")
        time.sleep(0.5)

    runs = {t: len((env.tasks / t / "bench.runs").read_text().split()) for t in done}
    completed_lines = {t: (env.tasks / t / "progress.log").read_text().count(" Completed\n") for t in done}
    titles = [n["title"] for n in hook.received]
    doubled = sorted({t for t in titles if titles.count(t) > 1})
    print(
        f"\n{KILLS} kills (completed tasks at each: {moments}); tasks run twice (a start cut short and "
        f"restarted): {sum(1 for n in runs.values() if n > 1)}; notices delivered twice: {len(doubled)}"
    )
    assert all(s["exit_code"] in (0, None) and s["error"] is None for s in done.values())  # none killed
    assert set(completed_lines.values()) == {1}  # each finished exactly once
    assert set(runs.values()) == {1}  # and ran once: a start cut short by a kill is taken over
    assert all(json.loads((env.tasks / t / "results.json").read_text()) for t in done)
    assert not task_processes(env)  # no orphans
    assert {f"Codex task completed: k{i:02d}" for i in range(TASKS)} == set(titles)
    assert len(doubled) <= KILLS  # a double only where a kill fell between a delivery and its record
    assert max(moments) > 0 and min(moments) < TASKS  # the kills fell during the run
