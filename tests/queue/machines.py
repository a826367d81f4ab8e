"""Daemons as the machines of a team: each with its own state folder, spool and CODEX_HOME,
all sharing one tasks_dir and one queue.url. Codex is bench/fake-codex (one line per run in
the task's bench.runs, so a test counts the runs of each task)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from tests.conftest import ROOT, WAIT_SLACK, kill_task_processes

FAKE_CODEX = ROOT / "bench" / "fake-codex"
FIRST_RUN_HANGS = Path(__file__).parent / "first-run-hangs"


class Machine:
    def __init__(self, root: Path, name: str, tasks: Path, url: str, **settings: str) -> None:
        self.name = name
        self.home = root / name
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text("")
        self.tasks = tasks
        self.spool = self.home / "spool"
        self.vars = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CODEXD_")},
            "CODEXD_CONFIG": str(self.home / "config.toml"),
            "CODEXD_TASKS_DIR": str(tasks),
            "CODEXD_SPOOL_DIR": str(self.spool),
            "CODEXD_QUEUE__URL": url,
            "CODEXD_QUEUE__NAME": name,
            "CODEXD_CODEX__COMMAND": json.dumps([str(FAKE_CODEX)]),
            "CODEXD_CODEX__ENV": '["BENCH_CODEX_SECONDS"]',
            "CODEXD_DAEMON__STOP_GRACE": "2",
            "CODEXD_DAEMON__RESCAN_INTERVAL": "2",
            "CODEXD_DAEMON__STATUS_INTERVAL": "0.2",
            "CODEXD_HEALTH__BACKOFF": "0.1",
            "CODEXD_HEALTH__BACKOFF_MAX": "1",
            "CODEX_HOME": str(self.home / "codex-home"),
            "PYTHONPATH": str(ROOT),
            **settings,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.home / "daemon.log"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "codexd", "daemon"], env=self.vars, stdout=out, stderr=out
            )
        wait_for(lambda: "queue.connected" in self.output() or self._died(), 30, f"{self.name} connected")
        assert self.proc.poll() is None, self.output()[-3000:]

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def codexd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "codexd", *args],
            env=self.vars,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def drop(self, task_id: str, body: str = "Do the thing.", **fields: str) -> None:
        """An instruction file into this machine's spool."""
        self.spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        front = "".join(f"{key} = {value}\n" for key, value in {"task_id": f'"{task_id}"', **fields}.items())
        tmp = self.spool / f"{task_id}.part"
        tmp.write_text(f"+++\n{front}+++\n{body}\n")
        tmp.rename(self.spool / f"{task_id}.md")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)

    def kill_with_codex(self) -> None:
        """The machine dies: its daemon and every Codex process it started, at once."""
        assert self.proc is not None
        daemon = psutil.Process(self.proc.pid)
        children = daemon.children(recursive=True)
        trees = [p for p in psutil.process_iter() if _runs_with(p, self.vars["CODEX_HOME"])]
        for proc in [daemon, *children, *trees]:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self.proc.wait(10)


def _runs_with(proc: psutil.Process, codex_home: str) -> bool:
    """A Codex of this machine's (of this test's: tests on other xdist workers have an m1 too)."""
    with contextlib.suppress(psutil.Error):
        return proc.environ().get("CODEX_HOME") == codex_home
    return False


def runs_of(tasks: Path, task_id: str) -> int:
    path = tasks / task_id / "bench.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def taker_of(tasks: Path, task_id: str) -> list[str]:
    """Which machines took the task, from its progress.log."""
    lines = (tasks / task_id / "progress.log").read_text().splitlines()
    return [
        line.split(" by codexd ")[1].split()[0] for line in lines if "from the shared queue by codexd" in line
    ]


def state_of(tasks: Path, task_id: str) -> str:
    try:
        return str(json.loads((tasks / task_id / "status.json").read_text())["status"])
    except (FileNotFoundError, ValueError):
        return ""


def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout * WAIT_SLACK
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def team(root: Path, url: str, names: tuple[str, ...], **settings: str) -> Iterator[list[Machine]]:
    tasks = root / "shared-tasks"
    machines = [Machine(root, name, tasks, url, **settings) for name in names]
    try:
        yield machines
    finally:
        for machine in machines:
            if machine.proc is not None and machine.proc.poll() is None:
                machine.proc.kill()
                machine.proc.wait(10)
        kill_task_processes(root)
