"""A real PostgreSQL for the shared queue's tests: started in a temporary folder, on a unix
socket only (no port to collide), by a user of its own when the tests run as root.

`./dev test` installs Debian's postgresql when it is missing and says where its programs
are (CODEXD_TEST_PG_BIN) and, as root, which user runs the server (CODEXD_TEST_PG_USER).
A server that cannot start fails the tests with one line: nothing here is skipped.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DB_USER = "codexd"
_names = itertools.count()


def _bin_dir() -> Path:
    given = os.environ.get("CODEXD_TEST_PG_BIN")
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    where = Path(given) if given else Path(found[-1]) if found else None
    if where is None or not (where / "initdb").exists():
        pytest.fail("PostgreSQL is not installed: run the tests with ./dev test (it installs postgresql)")
    return where


@dataclass
class Postgres:
    """One server: its folder, and the user who runs it (None: the one running the tests)."""

    root: Path
    bin: Path
    user: str | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            pytest.fail(f"PostgreSQL: {' '.join(args[:2])} failed: {done.stderr.strip()} {log}")

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def init(self) -> None:
        initdb = str(self.bin / "initdb")
        self._run(initdb, "-D", str(self.data), "-U", DB_USER, "--auth=trust", "-N", "-E", "UTF8")

    def start(self) -> None:
        options = f"-k {self.root} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        pg_ctl = str(self.bin / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql://{DB_USER}@/{database}?host={self.root}"

    def new_database(self) -> str:
        """A database of its own for one test: the url a daemon's queue.url names."""
        import psycopg

        name = f"t{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    user = os.environ.get("CODEXD_TEST_PG_USER") if os.geteuid() == 0 else None
    if os.geteuid() == 0 and not user:
        pytest.fail("PostgreSQL does not run as root: run the tests with ./dev test (CODEXD_TEST_PG_USER)")
    root = Path(tempfile.mkdtemp(prefix="codexd-pg-"))  # short: a socket's path has 107 bytes
    if user:
        shutil.chown(root, user)
    server = Postgres(root, _bin_dir(), user)
    server.init()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(BaseException):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One server for the session (of each xdist worker that runs these tests)."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def queue_url(postgres: Postgres) -> str:
    return postgres.new_database()
