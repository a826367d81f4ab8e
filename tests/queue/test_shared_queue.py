"""Two machines on one shared queue (a real PostgreSQL): work is shared, never done twice,
and a machine that dies mid-task loses nothing."""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import cast

import psutil
import pytest

from tests.fake_model import Call, Hang, Once, Say, serve
from tests.queue.conftest import running_postgres
from tests.queue.machines import FIRST_RUN_HANGS, Machine, runs_of, state_of, taker_of, team, wait_for

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


OUTAGE = float(os.environ.get("CODEXD_TEST_OUTAGE", "30"))  # seconds; the issue asks for 30


def test_the_database_stopped_for_thirty_seconds_loses_nothing(tmp_path: Path) -> None:
    """Tasks that end while the database is away, and tasks submitted then, all complete once;
    both daemons run on and take new work afterwards."""
    with running_postgres() as server:  # a server of its own: the others' tests go on meanwhile
        url = server.new_database()
        settings = {"CODEXD_MAX_PARALLEL": "2", "BENCH_CODEX_SECONDS": "3"}
        with team(tmp_path, url, ("m1", "m2"), **settings) as (m1, m2):
            m1.start()
            m2.start()
            before = [f"before-{n}" for n in range(4)]
            for n, task_id in enumerate(before):
                (m1, m2)[n % 2].drop(task_id)
            tasks = m1.tasks
            wait_for(lambda: all(runs_of(tasks, t) == 1 for t in before), 30, "four tasks running")
            server.stop()
            during = [f"during-{n}" for n in range(4)]
            for n, task_id in enumerate(during):
                (m1, m2)[n % 2].drop(task_id)
            time.sleep(OUTAGE)
            server.start()
            back = database_now(url)
            after = ["after-0", "after-1"]
            m2.drop(after[0])
            m1.drop(after[1])
            every = before + during + after
            wait_for(
                lambda: all(state_of(tasks, t) == "completed" for t in every), 60, "every task completed"
            )
            assert {t: runs_of(tasks, t) for t in every} == dict.fromkeys(every, 1)
            assert all(len(taker_of(tasks, t)) == 1 for t in every)
            # Both recover: their workers beat again, after the database came back.
            wait_for(lambda: beating_since(url, back) == 2, 30, "both workers' heartbeats")
            assert all(m.proc is not None and m.proc.poll() is None for m in (m1, m2))
            m1.stop()
            m2.stop()


def database_now(url: str) -> datetime:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return cast(datetime, row[0])


def beating_since(url: str, since: datetime) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > %s", (since,)
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.codex
def test_a_task_resumed_on_another_machine_keeps_its_codex_session(
    tmp_path: Path, queue_url: str, codex_cli: str
) -> None:
    """The real Codex: the session's rollout file travels with the task into the other
    machine's CODEX_HOME, so the resumed run carries on the same session (afresh, the model
    would be asked from the start again, and hang again)."""
    scenario = {"travels": [Call("echo step >> steps.txt"), Once(Hang(), Say("finished after resume"))]}
    work = tmp_path / "work"
    work.mkdir()
    with serve(scenario) as model:
        settings = {
            "CODEXD_QUEUE__TAKEOVER_AFTER": "2",
            "CODEXD_CODEX__COMMAND": json.dumps([codex_cli]),
            "CODEXD_CODEX__ARGS": json.dumps(["-s", "danger-full-access"]),
            "MOCK_API_KEY": "test",
        }
        with team(tmp_path, queue_url, ("m1", "m2"), **settings) as machines:
            for machine in machines:
                model.write_codex_home(Path(machine.vars["CODEX_HOME"]))
                machine.start()
            machines[0].drop("travels", "SCENARIO: travels", cwd=json.dumps(str(work)))
            kept = machines[0].tasks / "travels" / "session"
            wait_for(lambda: "function_call_output" in kept_text(kept), 60, "the session kept with the task")
            first = taker_of(machines[0].tasks, "travels")
            doomed, other = sorted(machines, key=lambda m: m.name != first[0])
            doomed.kill_with_codex()
            tasks = other.tasks
            wait_for(lambda: state_of(tasks, "travels") == "completed", 90, "the task completed on the other")
            log = (tasks / "travels" / "progress.log").read_text()
            assert "could not be resumed" not in log
            assert (work / "steps.txt").read_text() == "step\n"  # the step was not done again
            assert taker_of(tasks, "travels") == [doomed.name, other.name]
            other.stop()


def kept_text(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.glob("rollout-*.jsonl"))


def test_stop_and_retry_from_any_machine_reach_the_task_wherever_it_is(
    tmp_path: Path, queue_url: str
) -> None:
    """`codexd stop` on one machine stops a task the other runs, and one still waiting in the
    queue never runs; `codexd retry` puts a task back into the queue."""
    hangs_once = json.dumps([str(FIRST_RUN_HANGS)])
    settings = {"CODEXD_MAX_PARALLEL": "1", "CODEXD_CODEX__COMMAND": hangs_once}
    with team(tmp_path, queue_url, ("m1", "m2"), **settings) as (m1, m2):
        m1.start()
        m1.drop("running")
        tasks = m1.tasks
        wait_for(lambda: runs_of(tasks, "running") == 1, 30, "the task running on m1")
        m1.drop("waiting")  # m1 is full, and m2 not started: it waits in the queue
        wait_for(lambda: submitted(m1, "waiting"), 30, "the waiting task in the queue")
        stopped = m2.codexd("stop", "waiting")  # from a machine with no daemon: still in the queue
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: state_of(tasks, "waiting") == "cancelled", 30, "the waiting task cancelled")
        m2.start()
        stopped = m2.codexd("stop", "running")  # m1 holds it
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: state_of(tasks, "running") == "cancelled", 30, "the running task stopped")
        wait_for(lambda: state_of(tasks, "waiting") == "cancelled", 30, "the waiting task stopped")
        assert runs_of(tasks, "waiting") == 0
        retried = m2.codexd("retry", "running")
        assert retried.returncode == 0, retried.stderr
        wait_for(lambda: state_of(tasks, "running") == "completed", 30, "the retried task completed")
        assert runs_of(tasks, "running") == 2
        m1.stop()
        m2.stop()


def test_two_tasks_in_one_folder_never_run_at_once_even_on_two_machines(
    tmp_path: Path, queue_url: str
) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    settings = {"BENCH_CODEX_SECONDS": "1.5"}
    with team(tmp_path, queue_url, ("m1", "m2"), **settings) as (m1, m2):
        m1.start()
        m2.start()
        m1.drop("first", cwd=json.dumps(str(work)))
        m2.drop("second", cwd=json.dumps(str(work)))
        m2.drop("elsewhere")  # another folder: free to run beside them
        tasks = m1.tasks
        ids = ("first", "second", "elsewhere")
        wait_for(lambda: all(state_of(tasks, t) == "completed" for t in ids), 60, "all completed")
        spans = sorted(span_of(tasks, t) for t in ("first", "second"))
        assert spans[0][1] <= spans[1][0], spans  # one ended before the other began
        m1.stop()
        m2.stop()


def span_of(tasks: Path, task_id: str) -> tuple[float, float]:
    """When the task's Codex started and exited (the fake stamps both)."""
    folder = tasks / task_id
    return float((folder / "bench.started").read_text()), float((folder / "bench.exited").read_text())


def test_a_task_after_another_does_not_hold_the_slot_that_one_needs(tmp_path: Path, queue_url: str) -> None:
    """One machine, one slot: `second` (after `first`, higher priority) is handed over first;
    its job goes back to the queue rather than wait in the slot `first` needs."""
    settings = {"CODEXD_MAX_PARALLEL": "1", "BENCH_CODEX_SECONDS": "2"}
    with team(tmp_path, queue_url, ("m1",), **settings) as (m1,):
        m1.start()
        m1.drop("busy")
        tasks = m1.tasks
        wait_for(lambda: runs_of(tasks, "busy") == 1, 30, "the slot taken")
        m1.drop("first")
        wait_for(lambda: state_of(tasks, "first") == "queued", 30, "first queued")
        m1.drop("second", after='["first"]', priority="10")
        wait_for(lambda: state_of(tasks, "second") == "completed", 60, "second completed")
        assert span_of(tasks, "first")[1] <= span_of(tasks, "second")[0]
        m1.stop()


def test_a_daemon_that_crashed_alone_ends_its_leftover_codex_when_it_starts_again(
    tmp_path: Path, queue_url: str
) -> None:
    """SIGKILL to the daemon alone: its Codex lives on. Started again, it ends that Codex (or
    the task would run twice once the queue hands it out again), and the task completes."""
    hangs_once = json.dumps([str(FIRST_RUN_HANGS)])
    settings = {"CODEXD_QUEUE__TAKEOVER_AFTER": "2", "CODEXD_CODEX__COMMAND": hangs_once}
    with team(tmp_path, queue_url, ("m1",), **settings) as (m1,):
        m1.start()
        m1.drop("orphaned")
        tasks = m1.tasks
        wait_for(lambda: runs_of(tasks, "orphaned") == 1, 30, "the first run")
        first_codex = int((tasks / "orphaned" / "bench.runs").read_text().split()[0])
        assert m1.proc is not None
        m1.proc.kill()
        m1.proc.wait(10)
        assert psutil.pid_exists(first_codex)
        m1.start()
        wait_for(lambda: not alive(first_codex), 30, "the leftover Codex ended")
        wait_for(lambda: state_of(tasks, "orphaned") == "completed", 60, "the task completed")
        assert runs_of(tasks, "orphaned") == 2
        m1.stop()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def submitted(machine: Machine, task_id: str) -> bool:
    """The machine's daemon put the task's job into the queue."""
    for line in machine.output().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "queue.submitted" and entry.get("task_id") == task_id:
                return True
    return False
