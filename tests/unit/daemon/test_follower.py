"""Any amount of output: lines of tens of MB and floods of short events are read in bounded
steps, in time linear in what is new, and still count as progress."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from codexd import api, tailing, tasklogs
from codexd.daemon import follower
from codexd.tasks import store
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState
from tests.unit.daemon.test_supervisor import COMMAND, THREAD, world  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(60)
MB = 1 << 20


def command_done(output_bytes: int, command: str = "make") -> dict[str, Any]:
    """Codex's event for a command whose output was large: one line of over `output_bytes`."""
    item = {
        "id": "i2",
        "type": "command_execution",
        "command": f"/bin/bash -lc '{command}'",
        "aggregated_output": "x" * output_bytes,
        "exit_code": 0,
        "status": "completed",
    }
    return {"type": "item.completed", "item": item}


class Reads:
    """Counts the read calls and bytes read from files opened with `open` (mode "rb")."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls = self.bytes = 0
        real = builtins.open
        counter = self

        class Counted:
            def __init__(self, f: Any):
                self.f = f

            def __enter__(self) -> Counted:
                return self

            def __exit__(self, *exc: object) -> None:
                self.f.close()

            def __getattr__(self, name: str) -> Any:
                return getattr(self.f, name)

            def read(self, n: int = -1) -> bytes:
                data: bytes = self.f.read(n)
                counter.calls += 1
                counter.bytes += len(data)
                return data

            def readinto(self, buffer: Any) -> int:
                got: int = self.f.readinto(buffer)
                counter.calls += 1
                counter.bytes += got
                return got

        def counted_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            f = real(file, mode, *args, **kwargs)
            return Counted(f) if "b" in mode and "r" in mode else f

        monkeypatch.setattr(builtins, "open", counted_open)
        monkeypatch.setattr(Path, "open", lambda self, mode="r", *a, **k: counted_open(self, mode, *a, **k))


# -- the follower ---------------------------------------------------------------------------


def test_an_event_line_over_a_mebibyte_is_taken_and_counts_as_progress(world):  # noqa: F811
    """The real Codex CLI wrote a 1,048,830-byte line; it never completed, so the task was
    taken for stalled, killed four times and failed."""
    w = world()
    w.submit()
    w.events("t1", THREAD, COMMAND)
    w.advance(0)
    w.advance(800)
    w.events("t1", command_done(3 * MB))
    w.advance(0)
    size = (w.settings.tasks_dir / "t1" / "events.jsonl").stat().st_size
    assert w.status()["daemon"]["events"] == size  # taken whole
    assert "Finished (exit 0): make" in w.log()
    w.advance(800)  # 1600 s after the command started, 800 s after its output came
    assert w.status()["status"] == "in_progress" and w.status()["stalls"] == 0


def test_a_huge_line_is_kept_as_a_capped_excerpt(tmp_path):
    events = tmp_path / "events.jsonl"
    big = json.dumps(command_done(20 * MB, "cat big.log")).encode()
    events.write_bytes(b'{"type":"turn.started"}\n' + big + b"\n")
    lines = list(store.complete_lines(events, 0))
    assert [line.end for line in lines] == [24, 24 + len(big) + 1]
    huge = lines[1]
    assert huge.size == len(big) and len(huge.head) + len(huge.tail) <= store.LINE_CAP
    assert huge.cut == len(big) - len(huge.head) - len(huge.tail)
    event = follower.event_of(huge)
    assert event is not None and event["type"] == "item.completed"
    assert event["item"] == {
        "type": "command_execution",
        "command": "/bin/bash -lc 'cat big.log'",
        "exit_code": 0,
        "status": "completed",
    }


def test_a_long_line_still_being_written_is_not_read_again_from_its_start(tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"type":"turn.started"}\n' + b"x" * (8 * MB))
    reads = Reads(monkeypatch)
    assert [line.end for line in store.complete_lines(events, 0)] == [24]
    for _ in range(10):  # ten ticks while the line is still coming
        assert list(store.complete_lines(events, 24)) == []
        with events.open("ab") as f:
            f.write(b"x" * 1024)
    with events.open("ab") as f:
        f.write(b"\n")
    assert [line.size for line in store.complete_lines(events, 24)] == [8 * MB + 10 * 1024]
    assert reads.bytes < 8 * MB * 1.5  # not eleven times over


def make_status(task_id: str = "t1") -> TaskStatus:
    at = "2025-10-31T12:00:00Z"
    return TaskStatus(task_id, "generic", TaskState.IN_PROGRESS, at, at, log_file="x")


def test_a_backlog_is_taken_in_bounded_steps(tmp_path):
    events = tmp_path / "events.jsonl"
    event = json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "hi " * 30}})
    count = 16 * MB // (len(event) + 1)
    events.write_text((event + "\n") * count)
    status, steps, lines = make_status(), 0, 0
    while True:
        moved = follower.advance(tmp_path, status)
        if moved is None:
            break
        assert moved.status.daemon.events - status.daemon.events <= follower.STEP_BYTES
        assert len(moved.lines) <= follower.STEP_LINES
        status, steps, lines = moved.status, steps + 1, lines + len(moved.lines)
        assert moved.more == (status.daemon.events < events.stat().st_size)
    assert status.daemon.events == events.stat().st_size and lines == count
    assert steps >= 16 * MB // follower.STEP_BYTES


def test_a_task_with_a_backlog_does_not_hold_up_another(world):  # noqa: F811
    w = world()
    w.submit(task_id="flood")
    w.submit(task_id="quick")
    flood = json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "a" * 200}})
    with (w.settings.tasks_dir / "flood" / "events.jsonl").open("w") as f:
        f.writelines(flood + "\n" for _ in range(64 * MB // len(flood)))
    w.events("quick", THREAD)
    w.advance(0)
    assert "Codex session th-1 started" in w.log("quick")
    assert w.status("flood")["daemon"]["events"] <= follower.STEP_BYTES  # one bounded step each
    assert w.sup.runs.behind  # the loop comes back at once for the rest
    w.tick_until(lambda: not w.sup.runs.behind, timeout=30)
    size = (w.settings.tasks_dir / "flood" / "events.jsonl").stat().st_size
    assert w.status("flood")["daemon"]["events"] == size


def test_a_run_ending_with_a_backlog_is_judged_once_all_of_it_is_read(world):  # noqa: F811
    w = world()
    w.submit()
    said = json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "b" * 200}})
    w.events("t1", THREAD, {"type": "turn.started"})
    with (w.settings.tasks_dir / "t1" / "events.jsonl").open("a") as f:
        f.writelines(said + "\n" for _ in range(8 * MB // len(said)))
    w.events("t1", {"type": "turn.completed", "usage": {}})
    w.procs.current.end(0)
    w.tick_until(lambda: w.status()["status"] == "completed", timeout=30)
    assert w.log().count("Agent: " + "b" * 10) == 8 * MB // len(said)
    assert w.log().splitlines()[-2].endswith("Turn completed")


def test_a_run_is_judged_from_capped_lines(tmp_path):
    events = tmp_path / "events.jsonl"
    big = json.dumps(command_done(10 * MB)).encode()
    events.write_bytes(big + b'\n{"type":"turn.completed"}')  # the last line unfinished: a kill
    lines = list(store.lines_from(events, 0))
    assert [len(line) for line in lines] == [
        store.LINE_CAP - store.TAIL_KEPT,
        len(b'{"type":"turn.completed"}'),
    ]


# -- tails: linear, and bounded for those that need only the end ---------------------------


def test_the_tail_of_a_40_mb_line_is_read_in_few_large_steps(tmp_path, monkeypatch):
    stderr = tmp_path / "stderr.log"
    stderr.write_bytes(b"y" * (40 * MB) + b"\nerror: boom\n")
    reads = Reads(monkeypatch)
    lines = tailing.tail_lines(stderr, 2)
    assert lines[-1] == "error: boom" and len(lines[0]) == 40 * MB
    assert reads.calls <= 40 and reads.bytes <= 2 * (40 * MB + 64 * 1024)  # found backwards, read forwards


def test_the_stderr_reason_reads_only_the_end(tmp_path, monkeypatch):
    stderr = tmp_path / "stderr.log"
    stderr.write_bytes(b"y" * (40 * MB) + b"\nerror: boom\n")
    reads = Reads(monkeypatch)
    lines = tailing.tail_lines(stderr, 5, max_bytes=tailing.REASON_BYTES)
    assert lines[-1] == "error: boom" and lines[0].startswith("[…] yyy")
    assert reads.bytes <= 2 * tailing.REASON_BYTES + 2  # found backwards, read forwards
    assert tailing.tail_bytes(stderr, 5) == b"boom\n"
    assert tailing.tail_bytes(stderr, 100, start=40 * MB) == b"\nerror: boom\n"


def test_progress_views_cut_a_long_line_with_a_marker(tmp_path):
    tasks = store.TaskStore(tmp_path)
    tasks.dir("t1").mkdir()
    tasks.write_status(make_status())
    (tmp_path / "t1" / "progress.log").write_bytes(b"2025 " + b"z" * (5 * MB) + b"\n2025 last\n")
    shown = api.CodexTaskMonitor("t1", tasks_dir=tmp_path).tail_logs(2)
    assert shown[1] == "2025 last"
    assert shown[0].endswith(f"… [{5 * MB + 5 - tailing.SHOWN_CHARS} bytes cut]")
    assert len(shown[0]) < tailing.SHOWN_CHARS + 40


def test_logs_raw_prints_a_huge_line_whole_and_follow_takes_it_in_few_reads(tmp_path, monkeypatch):
    tasks = api.Tasks(tmp_path)
    tasks.store.dir("t1").mkdir()
    tasks.store.write_status(make_status().with_(status=TaskState.COMPLETED))
    events = tmp_path / "t1" / "events.jsonl"
    events.write_bytes(b"a" * (30 * MB) + b"\nb\n")
    printed = b"".join(tasklogs.log_chunks(tasks, "t1", True, 2, False))
    assert printed == events.read_bytes()
    assert b"".join(tasklogs.log_chunks(tasks, "t1", True, 1, False)) == b"b\n"
    reads = Reads(monkeypatch)
    followed = list(tasklogs.follow(events, 0, lambda: True, poll=0))
    assert [len(x) for x in followed] == [30 * MB, 1]
    assert reads.calls <= 40


@pytest.mark.parametrize(
    ("content", "n", "options", "lines"),
    [
        (b"a\nb\nc\n", 2, {}, ["b", "c"]),
        (b"a\nb\nc", 2, {}, ["b", "c"]),  # the last line still being written
        (b"a\nb\nc", 5, {}, ["a", "b", "c"]),
        (b"", 3, {}, []),
        (b"\n\n\n", 2, {}, ["", ""]),
        (b"a\nb\nc\n", 2, {"end": 4}, ["a", "b"]),
        (b"a\nb\nc\n", 1, {"block": 1}, ["c"]),
        (b"abc\ndef\n", 2, {"max_bytes": 6}, ["[…] c", "def"]),
        (b"abc\ndef\n", 2, {"max_bytes": 4}, ["def"]),
        (b"a" * 10 + b"\n", 1, {"width": 3}, ["aaa… [7 bytes cut]"]),
    ],
)
def test_tail_lines_edges(tmp_path, content, n, options, lines):
    path = tmp_path / "log"
    path.write_bytes(content)
    assert tailing.tail_lines(path, n, **options) == lines


def test_a_splitter_with_a_width_holds_no_more_than_it():
    lines = tailing.Splitter(5)
    assert lines.feed(b"abc") == [] and lines.feed(b"d" * (10 * MB)) == []
    assert lines._kept == 5
    assert lines.feed(b"e\nshort\nlast") == [f"abcdd… [{10 * MB + 4 - 5} bytes cut]", "short"]
    assert lines.rest() == ["last"] and lines.rest() == []
