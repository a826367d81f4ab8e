"""The task store's atomic files, and settings precedence."""

from __future__ import annotations

import json
import os
import threading

import pytest

from codexd.clock import FakeClock
from codexd.config import paths, settings
from codexd.errors import ConfigError, StorageError, UnknownTask
from codexd.tailing import tail_lines
from codexd.tasks import store
from codexd.tasks.records import TaskStatus
from codexd.tasks.spool import Spool, has_writer
from codexd.tasks.states import TaskState, can_change

pytestmark = pytest.mark.timeout(30)


def status(task_id="t1", **extra):
    return TaskStatus(
        task_id,
        "generic",
        TaskState.QUEUED,
        "2025-10-31T11:50:00Z",
        "2025-10-31T11:50:00Z",
        log_file="x",
        **extra,
    )


def test_status_round_trips_with_every_spec_field(tmp_path):
    tasks = store.TaskStore(tmp_path)
    (tmp_path / "t1").mkdir()
    tasks.write_status(status())
    data = json.loads((tmp_path / "t1" / "status.json").read_text())
    spec = {
        "task_id",
        "type",
        "status",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "progress",
        "results",
        "pid",
        "log_file",
        "thread_id",
        "restarts",
        "exit_code",
        "error",
        "last_log",
    }
    assert spec <= set(data)
    assert set(data["progress"]) >= {"total", "completed", "percentage", "current", "items"}
    assert TaskStatus.from_dict(data) == status()
    assert not [p for p in (tmp_path / "t1").iterdir() if p.name.endswith(".tmp")]


def test_readers_never_see_a_torn_status(tmp_path):
    tasks = store.TaskStore(tmp_path)
    (tmp_path / "t1").mkdir()
    tasks.write_status(status())
    stop, seen = threading.Event(), []

    def read():
        while not stop.is_set():
            seen.append(tasks.read_status("t1").restarts)

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(300):
        tasks.write_status(status(restarts=n, error="x" * (n * 50)))
    stop.set()
    reader.join()
    assert seen and seen == sorted(seen)


def test_a_failed_write_keeps_the_last_good_file(tmp_path, monkeypatch):
    tasks = store.TaskStore(tmp_path)
    (tmp_path / "t1").mkdir()
    tasks.write_status(status())

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(StorageError, match="No space left"):
        tasks.write_status(status(restarts=5))
    monkeypatch.undo()
    assert tasks.read_status("t1").restarts == 0
    assert [p.name for p in (tmp_path / "t1").iterdir()] == ["status.json"]


def test_unknown_and_invalid_ids(tmp_path):
    tasks = store.TaskStore(tmp_path)
    for bad in ("nope", "../etc", ""):
        with pytest.raises(UnknownTask):
            tasks.read_status(bad)


def test_tail_reads_only_the_end(tmp_path):
    log = tmp_path / "progress.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail_lines(log, 3) == ["line 99997", "line 99998", "line 99999"]
    assert tail_lines(log, 2, end=len("line 0\nline 1\n")) == ["line 0", "line 1"]
    assert tail_lines(tmp_path / "missing", 5) == []


def test_transitions():
    assert can_change(TaskState.QUEUED, TaskState.IN_PROGRESS)
    assert can_change(TaskState.STALLED, TaskState.IN_PROGRESS)
    assert not can_change(TaskState.COMPLETED, TaskState.IN_PROGRESS)
    assert not can_change(TaskState.QUEUED, TaskState.COMPLETED)


def test_settings_precedence_env_over_file_over_defaults(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text(
        "max_parallel = 2\ntasks_dir = '~/codex-tasks'\n[health]\nstall_timeout = 60\ninterval = 30\n"
    )
    monkeypatch.setenv("CODEXD_HEALTH__INTERVAL", "5")
    loaded, path = settings.load(config)
    assert path == config
    assert (loaded.max_parallel, loaded.health.stall_timeout, loaded.health.interval) == (2, 60, 5)
    assert loaded.health.max_restarts == 3 and loaded.codex.command == ["codex"]
    assert loaded.tasks_dir == paths.expand("~/codex-tasks")
    assert paths.resolve(config).tasks_dir == loaded.tasks_dir  # the light path agrees


def test_an_explicit_config_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEXD_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        settings.load()


def test_secrets_are_masked():
    shown = settings.shown(settings.Settings(notify={"urls": ["discord://1234/secret-token"]}))
    assert shown["notify"]["urls"][0].startswith("discord://****#")


def test_a_spool_file_still_open_for_writing_waits_and_a_closed_one_is_taken_at_once(tmp_path):
    spool = Spool(tmp_path / "spool", store.TaskStore(tmp_path / "tasks"), ["generic"], FakeClock())
    (tmp_path / "spool").mkdir(mode=0o700)
    (tmp_path / "tasks").mkdir()
    path = tmp_path / "spool" / "copying.md"
    with path.open("w") as writer:
        writer.write("Do it.\n")
        writer.flush()
        assert has_writer(path) is True
        again = spool.take(path)
        assert isinstance(again, float) and path.exists()  # looked at again shortly, not taken
    assert has_writer(path) is False
    taken = spool.take(path)  # closed a moment ago: no settle delay where leases tell
    assert taken is not None and not isinstance(taken, float) and taken.task_id == "copying"
