"""A full disk (ENOSPC injected into the store's writes) under the real supervisor, with a
fake clock and fake processes: it stays up, says so, keeps the last good status.json,
and carries on when space returns."""

from __future__ import annotations

import errno
import json
import os

import pytest
import structlog

from tests.unit.daemon.test_supervisor import COMMAND, THREAD, world  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.fault, pytest.mark.timeout(60)]


class Disk:
    """os.write that fails with ENOSPC while the disk is full."""

    def __init__(self, monkeypatch):
        self.full = False
        self.refused = 0
        real = os.write

        def write(fd: int, data: bytes) -> int:
            if self.full:
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, data)

        monkeypatch.setattr(os, "write", write)


def test_a_full_disk_is_survived_and_nothing_is_lost(world, monkeypatch):  # noqa: F811
    w = world()
    w.submit()
    w.events("t1", THREAD, COMMAND)
    w.advance(0)
    good = w.status()
    assert good["thread_id"] == "th-1"
    disk = Disk(monkeypatch)
    with structlog.testing.capture_logs() as said:
        disk.full = True
        w.events(
            "t1", {"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": "half"}}
        )
        for _ in range(20):
            w.advance(0.5)  # ten seconds of a full disk
        w.events("t1", {"type": "turn.started"}, {"type": "turn.completed", "usage": {}})
        w.procs.current.end(0)
        w.tick_until(lambda: disk.refused > 40)
        assert w.status() == good  # the last good status.json, whole
        assert not [p for p in (w.settings.tasks_dir / "t1").iterdir() if p.name.endswith(".tmp")]
        disk.full = False
        w.tick_until(lambda: w.status()["status"] == "completed")
    errors = [e for e in said if e["log_level"] == "error"]
    assert errors and all("No space left on device" in e["error"] for e in errors)
    assert len(errors) <= 6  # said, not repeated every tick
    log = (w.settings.tasks_dir / "t1" / "progress.log").read_text()
    assert "Agent: half" in log and log.count("Completed") == 1  # the lines of the full minutes too
    assert json.loads((w.settings.tasks_dir / "t1" / "results.json").read_text())["summary"] is None
