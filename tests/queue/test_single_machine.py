"""Without queue.url nothing of the shared queue is loaded (no procrastinate, no psycopg); with
it, a database that does not answer is said in one line, and its password never."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.conftest import ROOT, Env, wait_for

QUEUE_MODULES = ("procrastinate", "psycopg", "codexd.queue")
REPORT = (
    f"\nimport json, sys\nprint('LOADED', json.dumps([m for m in {QUEUE_MODULES!r} if m in sys.modules]))"
)


def loaded(code: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code + REPORT],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("LOADED "))
    found: list[str] = json.loads(line.removeprefix("LOADED "))
    return found


def test_the_command_line_loads_nothing_of_the_queue() -> None:
    assert loaded("import codexd.cli.entry, codexd.cli.commands, codexd.api") == []


def test_a_daemon_without_queue_url_loads_nothing_of_the_queue(env: Env) -> None:
    code = (
        "from codexd.config import settings\n"
        "from codexd.daemon.supervisor import Supervisor\n"
        "daemon = Supervisor(settings.load()[0])\n"
        "daemon.start(); daemon.tick(); daemon.close()"
    )
    assert loaded(code, env.vars) == []


def test_a_database_that_does_not_answer_is_one_line_and_its_password_is_never_shown(env: Env) -> None:
    env.set(CODEXD_QUEUE__URL=f"postgresql://codexd:hunter22@/nowhere?host={env.root}/no-server")
    shown = env.codexd("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "hunter22" not in shown.stdout and "postgresql://" in shown.stdout
    log = env.root / "daemon.log"
    with log.open("ab") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "codexd", "daemon"], env=env.vars, stdout=out, stderr=out
        )
    try:
        wait_for(lambda: "queue.unavailable" in log.read_text(), 30, "the queue's one line")
        time.sleep(0.5)
        assert daemon.poll() is None  # it runs on, and tries again
        text = log.read_text()
        assert "hunter22" not in text
        assert "check queue.url and the database server" in text
    finally:
        daemon.terminate()
        daemon.wait(20)
