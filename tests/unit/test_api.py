"""The Python API on task folders made by hand (no daemon), and the documented settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from codexd import CodexTaskMonitor, settings, store
from codexd.errors import UnknownTask
from codexd.records import Progress, TaskStatus
from codexd.states import TaskState

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
