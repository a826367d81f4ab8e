"""Shared fixtures: private folders per test, the real Codex CLI, a fake model, a daemon."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.fake_model import FakeModel, Step, serve

ROOT = Path(__file__).resolve().parent.parent
CODEXD = [sys.executable, "-m", "codexd"]


# The Codex CLIs `./dev test` installs: the pinned release, and the newest, which tests marked
# both_codex also run against. Each is named by the variable holding its path and its version's.
CODEX_CLIS = {
    "pinned": ("CODEXD_TEST_CODEX", "CODEXD_TEST_CODEX_VERSION"),
    "newest": ("CODEXD_TEST_CODEX_NEWEST", "CODEXD_TEST_CODEX_NEWEST_VERSION"),
}


def real_codex(which: str = "pinned") -> str:
    """A Codex CLI that `./dev test` installs; its absence is a failure, not a skip."""
    variable = CODEX_CLIS[which][0]
    path = os.environ.get(variable)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{variable} is not set to the Codex CLI: run the tests with ./dev test")
    return path


def codex_id(which: str) -> str:
    """`codex-0.171.0`: a test id that says which release ran."""
    return f"codex-{os.environ.get(CODEX_CLIS[which][1]) or which}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_codex: runs against the pinned and the newest Codex CLI")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "codex_cli" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_codex"):
        metafunc.parametrize("codex_cli", list(CODEX_CLIS), indirect=True, ids=codex_id)


@pytest.fixture
def codex_cli(request: pytest.FixtureRequest) -> str:
    """The path of the Codex CLI a test runs: the pinned one unless the test is marked both_codex."""
    return real_codex(getattr(request, "param", "pinned"))


@dataclass
class Env:
    """One test's private world: folders, settings by environment, and helpers to run codexd."""

    root: Path
    vars: dict[str, str]

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    def set(self, **values: str) -> None:
        self.vars.update(values)

    def codexd(
        self, *args: str, input: bytes | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CODEXD, *args],
            env=self.vars,
            input=input.decode() if input else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )

    def status(self, task_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.tasks / task_id / "status.json").read_text())
        return data

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        return path


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    config = tmp_path / "config.toml"
    config.write_text("")
    values = {k: v for k, v in os.environ.items() if not k.startswith("CODEXD_") or k == "CODEXD_TEST_CODEX"}
    values.update(
        CODEXD_CONFIG=str(config),
        CODEXD_TASKS_DIR=str(tmp_path / "tasks"),
        CODEXD_SPOOL_DIR=str(tmp_path / "spool"),
        CODEXD_DAEMON__STOP_GRACE="2",
        CODEXD_DAEMON__RESCAN_INTERVAL="2",
        CODEXD_DAEMON__STATUS_INTERVAL="0.2",
        CODEXD_DAEMON__LOG_LEVEL="debug",
        CODEXD_HEALTH__BACKOFF="0.1",
        CODEXD_HEALTH__BACKOFF_MAX="1",
        # Every test's tasks run in its one folder; those about one folder per task unset this.
        CODEXD_SHARE_FOLDERS="true",
        PYTHONPATH=str(ROOT),
        XDG_CACHE_HOME=str(tmp_path / "cache"),  # the quick commands' cache, never the user's own
    )
    yield Env(tmp_path, values)
    kill_task_processes(tmp_path)


def kill_task_processes(root: Path) -> None:
    """Nothing a test started may outlive it."""
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("CODEXD_TASK_DIR", "").startswith(str(root)):
                proc.kill()
    from codexd.codex import containment

    found = containment.own_cgroup()  # and the task cgroups of a daemon the test killed
    for folder in found[0].glob(f"codexd-*-{containment.folder_key(root / 'tasks')}-*") if found else []:
        containment.end(folder)


@pytest.fixture
def model_world(env: Env, codex_cli: str) -> Callable[[dict[str, list[Step]]], FakeModel]:
    """Starts a fake model with the given scenarios and points the real Codex CLI at it."""
    stack = contextlib.ExitStack()

    def start(scenarios: dict[str, list[Step]]) -> FakeModel:
        model = stack.enter_context(serve(scenarios))
        home = model.write_codex_home(env.root / "codex-home")
        env.set(
            CODEX_HOME=str(home),
            MOCK_API_KEY="test",
            CODEXD_CODEX__COMMAND=json.dumps([codex_cli]),
            CODEXD_CODEX__ARGS=json.dumps(["-s", "danger-full-access"]),
        )
        return model

    yield start  # type: ignore[misc]
    stack.close()


class Daemon:
    def __init__(self, env: Env, *args: str):
        self.env = env
        self.log = (env.root / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            [*CODEXD, "daemon", *args],
            # A shutdown that hangs dumps its stacks into the log before stop() gives up.
            env={"CODEXD_DAEMON__STOP_TIMEOUT": "10", **env.vars},
            stdout=self.log,
            stderr=self.log,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 15) -> None:
        from codexd.daemon.lock import running_pid

        deadline = time.monotonic() + timeout * WAIT_SLACK
        while running_pid(self.env.tasks) != self.proc.pid:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon not ready: {self.output()}")
            time.sleep(0.02)
        while "daemon.started" not in self.output():
            time.sleep(0.02)

    def output(self) -> str:
        return (self.env.root / "daemon.log").read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon did not stop within {timeout} s: {self.output()[-4000:]}") from None
        self.log.close()
        return code


@pytest.fixture
def daemon(env: Env) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(*args: str) -> Daemon:
        d = Daemon(env, *args)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(5)


# Tests run three at once (pytest-xdist): a wait that a quiet machine passes in a second may
# need more when the other two are busy. A limit only matters when the test fails anyway.
WAIT_SLACK = 3.0 if os.environ.get("PYTEST_XDIST_WORKER") else 1.0


def wait_for(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """`predicate()` until it is true. A file it reads that is not there yet (a task's
    status.json before the daemon has taken the task from the spool) means: not yet."""
    deadline = time.monotonic() + timeout * WAIT_SLACK
    while True:
        try:
            value = predicate()
        except FileNotFoundError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
