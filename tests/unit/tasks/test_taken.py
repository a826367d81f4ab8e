"""What the daemon takes from an instruction file once, when it accepts the task (tasks/taken),
and the clock the spool runs on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codexd.clock import FakeClock
from codexd.errors import InvalidInput
from codexd.tasks import intake, store
from codexd.tasks.records import TaskStatus
from codexd.tasks.spool import Spool
from codexd.tasks.taken import Taken

pytestmark = pytest.mark.timeout(30)
FRONT = '+++\nnotify_tags = ["ops"]\nnotify_urls = ["json://localhost:1/secret-token-1234567890"]\n+++\n'


def spool_of(tmp_path: Path, clock: FakeClock | None = None) -> Spool:
    (tmp_path / "spool").mkdir(mode=0o700)
    (tmp_path / "tasks").mkdir()
    return Spool(tmp_path / "spool", store.TaskStore(tmp_path / "tasks"), ["generic"], clock or FakeClock())


def take(spool: Spool, name: str, text: str) -> TaskStatus:
    path = spool.dir / name
    path.write_text(text)
    os.utime(path, (0, 0))  # settled long ago
    taken = spool.take(path)
    assert isinstance(taken, TaskStatus)
    return taken


def test_the_body_offset_and_tags_are_recorded_and_the_task_s_urls_stay_out_of_status_json(tmp_path):
    spool = spool_of(tmp_path)
    status = take(spool, "t.md", FRONT + "Do it.\n")
    assert status.taken == Taken(len(FRONT.encode()), ("ops",), own_urls=True)
    raw = spool.tasks.file("t", store.STATUS).read_bytes()
    assert b"secret-token" not in raw and b'"body_offset"' in raw
    assert store.status_from(raw).taken == status.taken


def test_a_spawn_uses_the_recorded_offset_and_still_refuses_a_planted_link(tmp_path):
    spool = spool_of(tmp_path)
    status = take(spool, "t.md", FRONT + "Do it.\n")
    path = spool.tasks.file("t", store.INSTRUCTIONS)
    path.write_text("+++\n+++\nrewritten by the agent\n")  # not parsed again
    assert intake.body_offset(status, path) == len(FRONT.encode())
    path.unlink()
    path.symlink_to("/dev/zero")
    with pytest.raises(InvalidInput, match="symbolic link"):
        intake.body_offset(status, path)


def test_a_record_an_older_codexd_wrote_reads_its_instructions_as_then(tmp_path):
    spool = spool_of(tmp_path)
    data = take(spool, "t.md", FRONT + "Do it.\n").to_dict()
    del data["taken"]
    old = TaskStatus.from_dict(data)
    assert old.taken is None and old.to_dict()["taken"] is None
    assert intake.body_offset(old, spool.tasks.file("t", store.INSTRUCTIONS)) == len(FRONT.encode())


def test_tasks_taken_in_the_same_clock_tick_keep_their_order(tmp_path):
    spool = spool_of(tmp_path)
    first, second = take(spool, "a.md", "One.\n"), take(spool, "b.md", "Two.\n")
    assert first.created_at == second.created_at
    assert first.daemon.accepted_ns < second.daemon.accepted_ns


def test_a_file_still_settling_is_looked_at_again_on_the_spool_s_clock(tmp_path, monkeypatch):
    clock = FakeClock()
    spool = spool_of(tmp_path, clock)
    monkeypatch.setattr("codexd.tasks.spool.has_writer", lambda path: None)  # no leases here
    path = spool.dir / "fresh.md"
    path.write_text("Do it.\n")
    again = spool.take(path)
    assert isinstance(again, float)
    assert clock.now().timestamp() < again <= clock.now().timestamp() + intake.SETTLE_SECONDS
