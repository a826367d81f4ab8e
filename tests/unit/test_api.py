"""The Python API on task folders made by hand (no daemon), and the documented settings."""

from __future__ import annotations

import json
import threading
import tomllib
from pathlib import Path
from typing import ClassVar

import pytest

from codexd import CodexTaskMonitor
from codexd.config import settings
from codexd.errors import UnknownTask
from codexd.present import reports
from codexd.tasks import store
from codexd.tasks.records import Progress, TaskStatus
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(30)
ROOT = Path(__file__).resolve().parents[2]


def make_task(tasks_dir: Path, task_id: str, state: TaskState) -> store.TaskStore:
    tasks = store.TaskStore(tasks_dir)
    tasks.dir(task_id).mkdir(parents=True)
    tasks.write_status(
        TaskStatus(
            task_id,
            "generic",
            state,
            "2025-10-31T11:50:00Z",
            "2025-10-31T11:50:00Z",
            log_file="x",
            progress=Progress(total=4, completed=1),
        )
    )
    return tasks


def test_monitor_reads_a_task(tmp_path):
    tasks = make_task(tmp_path, "t1", TaskState.COMPLETED)
    tasks.write_results("t1", {"summary": "done"})
    (tmp_path / "t1" / "progress.log").write_text("".join(f"2025 line {i}\n" for i in range(50)))
    m = CodexTaskMonitor("t1", tasks_dir=tmp_path)
    assert m.get_status().status == TaskState.COMPLETED
    assert m.get_progress().percentage == 25.0
    assert m.tail_logs(2) == ["2025 line 48", "2025 line 49"]
    assert m.wait_for_completion(timeout=1) == {"summary": "done"}


def test_monitor_of_a_missing_task_raises_a_clear_error(tmp_path):
    with pytest.raises(UnknownTask, match="no task 'ghost'"):
        CodexTaskMonitor("ghost", tasks_dir=tmp_path)
    with pytest.raises(LookupError):
        CodexTaskMonitor("../etc", tasks_dir=tmp_path)


def test_waiting_on_a_running_task_times_out(tmp_path):
    make_task(tmp_path, "t2", TaskState.IN_PROGRESS)
    with pytest.raises(TimeoutError, match="still in_progress"):
        CodexTaskMonitor("t2", tasks_dir=tmp_path).wait_for_completion(timeout=0.2)


class CountingReader:
    """A file that counts the bytes read from it."""

    opened: ClassVar[list[CountingReader]] = []

    def __init__(self, f):
        self.f, self.read_bytes = f, 0
        CountingReader.opened.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def seek(self, *args):
        return self.f.seek(*args)

    def read(self, n=-1):
        data = self.f.read(n)
        self.read_bytes += len(data)
        return data


def test_tail_logs_reads_the_end_of_a_huge_log_only(tmp_path, monkeypatch):
    make_task(tmp_path, "big", TaskState.COMPLETED)
    with (tmp_path / "big" / "progress.log").open("wb") as f:
        f.truncate(1 << 30)  # a 1 GiB log (sparse)
        f.seek(1 << 30)
        f.write(b"".join(b"2025 line %d\n" % i for i in range(100)))
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: CountingReader(real_open(self, *a, **k)))
    assert CodexTaskMonitor("big", tasks_dir=tmp_path).tail_logs(20) == [
        f"2025 line {i}" for i in range(80, 100)
    ]
    assert (
        sum(r.read_bytes for r in CountingReader.opened) <= 128 * 1024
    )  # of 1 GiB: one block, and status.json


def test_wait_for_completion_returns_the_results_when_the_task_ends(tmp_path):
    tasks = make_task(tmp_path, "t3", TaskState.IN_PROGRESS)

    def finish() -> None:
        tasks.write_results("t3", {"summary": "all done"})
        tasks.write_status(tasks.read_status("t3").with_(status=TaskState.COMPLETED))

    timer = threading.Timer(0.3, finish)
    timer.start()
    try:
        assert CodexTaskMonitor("t3", tasks_dir=tmp_path).wait_for_completion(timeout=10) == {
            "summary": "all done"
        }
    finally:
        timer.cancel()


def test_the_report_is_typed_data_and_renders_in_every_format(tmp_path):
    tasks = make_task(tmp_path, "t4", TaskState.FAILED)
    tasks.write_status(tasks.read_status("t4").with_(error="Codex exited with code 1: boom", restarts=2))
    (tmp_path / "t4" / "progress.log").write_text(
        "2025-10-31T11:51:00Z Stalled: no progress for 15m00s\n2025-10-31T11:52:00Z Working on: x\n"
    )
    (tmp_path / "t4" / "artifacts" / "reports").mkdir(parents=True)
    (tmp_path / "t4" / "artifacts" / "reports" / "r.md").write_text("x" * 1500)
    report = CodexTaskMonitor("t4", tasks_dir=tmp_path).get_report()
    assert report["status"] == "failed" and report["restarts"] == 2
    assert report["incidents"] == [{"at": "2025-10-31T11:51:00Z", "text": "Stalled: no progress for 15m00s"}]
    assert report["artifacts"] == [{"path": "artifacts/reports/r.md", "bytes": 1500}]
    md = reports.render(report, "markdown")
    assert md.startswith("# ❌ t4: failed\n")
    assert "- **Error:** Codex exited with code 1: boom" in md and "`artifacts/reports/r.md` (1.5 kB)" in md
    page = reports.render(report, "html")
    assert (
        page.startswith("<!doctype html>")
        and "<style>" in page
        and "src=" not in page
        and "href=" not in page
    )
    assert "Codex exited with code 1: boom" in page
    assert json.loads(reports.render(report, "json"))["task_id"] == "t4"


def _keys(model: type, prefix: str = "") -> set[str]:
    found = set()
    for name, field in model.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and hasattr(nested, "model_fields"):
            found |= _keys(nested, f"{prefix}{name}.")
        elif name != "types":
            found.add(prefix + name)
    return found


def test_config_example_documents_every_key_and_is_valid():
    text = (ROOT / "config.example.toml").read_text()
    settings.Settings(**tomllib.loads(text))
    readme = (ROOT / "README.md").read_text()
    for key in _keys(settings.Settings):
        leaf = key.split(".")[-1]
        assert f"{leaf} =" in text or f"# {leaf} =" in text, key
        assert f"`{key}`" in readme, key
