"""Two machines on one shared queue (a real PostgreSQL): work is shared, never done twice,
and a machine that dies mid-task loses nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.queue.machines import FIRST_RUN_HANGS, runs_of, state_of, taker_of, team, wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(240)]


def test_two_machines_share_twenty_tasks_and_none_runs_twice(tmp_path: Path, queue_url: str) -> None:
    with team(tmp_path, queue_url, ("m1", "m2"), CODEXD_MAX_PARALLEL="3", BENCH_CODEX_SECONDS="0.5") as (
        m1,
        m2,
    ):
        m1.start()
        m2.start()
        ids = [f"job-{n:02d}" for n in range(20)]
        for n, task_id in enumerate(ids):
            (m1 if n % 2 else m2).drop(task_id)
        tasks = m1.tasks
        wait_for(lambda: all(state_of(tasks, t) == "completed" for t in ids), 60, "every task completed")
        takers = {task_id: taker_of(tasks, task_id) for task_id in ids}
        assert all(runs_of(tasks, t) == 1 for t in ids), {t: runs_of(tasks, t) for t in ids}
        assert all(len(who) == 1 for who in takers.values()), takers
        ran = {who[0] for who in takers.values()}
        assert ran == {"m1", "m2"}, takers
        # Any machine shows every task.
        listed = m2.codexd("list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert all(task_id in listed.stdout for task_id in ids)
        m1.stop()
        m2.stop()


def test_a_machine_killed_mid_task_has_its_task_completed_by_the_other(
    tmp_path: Path, queue_url: str
) -> None:
    settings = {
        "CODEXD_QUEUE__TAKEOVER_AFTER": "2",
        "CODEXD_CODEX__COMMAND": json.dumps([str(FIRST_RUN_HANGS)]),
    }
    with team(tmp_path, queue_url, ("m1", "m2"), **settings) as machines:
        for machine in machines:
            machine.start()
        machines[0].drop("long-one")
        tasks = machines[0].tasks
        wait_for(lambda: runs_of(tasks, "long-one") == 1, 30, "the task's first run")
        first = taker_of(tasks, "long-one")
        assert len(first) == 1 and state_of(tasks, "long-one") == "in_progress"
        doomed, other = sorted(machines, key=lambda m: m.name != first[0])
        killed_at = time.monotonic()
        doomed.kill_with_codex()
        wait_for(lambda: state_of(tasks, "long-one") == "completed", 60, "the task completed on the other")
        assert time.monotonic() - killed_at < 30  # taken over after 2 s of silence, not never
        assert taker_of(tasks, "long-one") == [doomed.name, other.name]
        assert runs_of(tasks, "long-one") == 2  # one cut short by the kill, one whole
        other.stop()
