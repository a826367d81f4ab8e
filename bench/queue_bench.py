"""The shared queue against the single machine: how fast tasks are submitted, how soon one starts.

    .venv/bin/python bench/queue_bench.py [--tasks 200] [--rounds 10]

Needs the queue extra (`uv sync --extra queue`) and PostgreSQL's programs (as `./dev test`
installs them; as root, CODEXD_TEST_PG_USER names the user that runs the server). It starts
a server of its own in a temporary folder, and daemons whose Codex is bench/fake-codex:

- submission: a burst of instruction files dropped into the spool at once, until every task
  is accepted (local: its status.json says queued; shared: its job is in the queue);
- pickup: one task dropped into an idle daemon's spool, until its Codex starts (the fake
  stamps bench.started), the median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.queue.conftest import running_postgres  # noqa: E402
from tests.queue.machines import Machine, state_of, wait_for  # noqa: E402


def in_queue(machine: Machine) -> int:
    """Tasks of the burst whose job is in the queue (the daemon logs each; a job that ended
    is deleted from the queue, so the table cannot be counted)."""
    lines = machine.output().splitlines()
    return sum('"queue.submitted"' in line and "burst-" in line for line in lines)


def submission(machine: Machine, count: int, accepted: Callable[[list[str]], bool]) -> float:
    """Tasks a second, from the first file dropped to the last task accepted."""
    ids = [f"burst-{n:04d}" for n in range(count)]
    began = time.monotonic()
    for task_id in ids:
        machine.drop(task_id)
    wait_for(lambda: accepted(ids), 300, "every task accepted")
    return count / (time.monotonic() - began)


def pickup(machine: Machine, rounds: int) -> float:
    """Median seconds from a file dropped to its Codex started, one task at a time."""
    seconds = []
    for n in range(rounds):
        task_id = f"pickup-{n:03d}"
        dropped = time.time()
        machine.drop(task_id)
        started = machine.tasks / task_id / "bench.started"
        wait_for(lambda path=started: path.exists() and path.read_text().strip(), 60, "its start")  # type: ignore[misc]
        seconds.append(float(started.read_text()) - dropped)
        wait_for(lambda t=task_id: state_of(machine.tasks, t) == "completed", 60, "its end")  # type: ignore[misc]
    return statistics.median(seconds)


def measure(root: Path, url: str | None, tasks: int, rounds: int) -> dict[str, float]:
    settings = {"CODEXD_MAX_PARALLEL": "4"}
    machine = Machine(root, "local" if url is None else "shared", root / "tasks", url or "", **settings)
    if url is None:
        del machine.vars["CODEXD_QUEUE__URL"]
    machine.start() if url is not None else start_local(machine)
    try:
        late = pickup(machine, rounds)
        if url is None:
            rate = submission(machine, tasks, lambda ids: all(state_of(machine.tasks, t) for t in ids))
        else:
            rate = submission(machine, tasks, lambda ids: in_queue(machine) >= len(ids))
    finally:
        machine.stop()
    return {"pickup_s": round(late, 4), "submitted_per_s": round(rate, 1)}


def start_local(machine: Machine) -> None:
    import subprocess

    with machine.log.open("ab") as out:
        machine.proc = subprocess.Popen(
            [sys.executable, "-m", "codexd", "daemon"], env=machine.vars, stdout=out, stderr=out
        )
    wait_for(lambda: "daemon.started" in machine.output(), 30, "the daemon")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    given = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="codexd-qb-") as folder, running_postgres() as server:
        root = Path(folder)
        results = {
            "local": measure(root / "local", None, given.tasks, given.rounds),
            "shared": measure(root / "shared", server.new_database(), given.tasks, given.rounds),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
