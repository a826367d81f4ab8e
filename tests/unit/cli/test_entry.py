"""The quick front door says exactly what the full command line says, or hands over to it."""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import replace

import pytest

from codexd.cli import commands, entry
from codexd.config import paths
from codexd.tasks import store
from codexd.tasks.records import Progress, TaskStatus
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def tasks(tmp_path, monkeypatch) -> store.TaskStore:
    monkeypatch.setenv("CODEXD_TASKS_DIR", str(tmp_path / "tasks"))
    monkeypatch.setenv("CODEXD_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("CODEXD_SPOOL_DIR", str(tmp_path / "spool"))  # never the user's own
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "config.toml").write_text("")
    found = store.TaskStore(tmp_path / "tasks")
    found.dir("t1").mkdir(parents=True)
    status = TaskStatus(
        "t1",
        "generic",
        TaskState.IN_PROGRESS,
        "2025-10-29T00:00:00Z",
        "2025-10-29T00:00:00Z",
        "-",
        progress=Progress(total=3),
    )
    found.write_status(status.with_(error="ünïcode ✅"))
    (tmp_path / "tasks" / "t1" / "progress.log").write_text("".join(f"2025 line {i}\n" for i in range(30)))
    return found


def run(monkeypatch, how, argv: list[str]) -> tuple[int | None, str]:
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", out)
    try:
        code = how(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out.flush()
    return code, out.buffer.getvalue().decode()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "argv", [["status", "t1", "--json"], ["logs", "t1", "-n", "5"], ["logs", "t1", "-n", "0"]]
)
def test_the_quick_answer_is_the_full_answer(tasks, monkeypatch, argv):
    quick = run(monkeypatch, entry.quick, argv)
    full = run(monkeypatch, commands.main, argv)
    assert quick == full and quick[0] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "ghost", "--json"],  # unknown: the full CLI names it
        ["status", "../t1", "--json"],
        ["status", "t1"],  # the text form
        ["logs", "t1", "-n", "x"],
        ["logs", "t1", "--follow"],
        ["--config", "x", "status", "t1", "--json"],
    ],
)
def test_anything_else_goes_to_the_full_command_line(tasks, argv):
    assert entry.quick(argv) is None


def test_it_finds_the_folder_the_settings_name_or_hands_over(tasks, tmp_path, monkeypatch):
    monkeypatch.delenv("CODEXD_TASKS_DIR")
    monkeypatch.delenv("CODEXD_SPOOL_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert paths.quick_tasks_dir() == str(tmp_path / "state" / "codexd" / "tasks")
    (tmp_path / "config.toml").write_text(f'tasks_dir = "{tmp_path / "tasks"}"\n')
    assert paths.quick_tasks_dir() == str(tmp_path / "tasks") == str(paths.resolve().tasks_dir)
    assert run(monkeypatch, entry.quick, ["status", "t1", "--json"])[0] == 0
    for broken in ('tasks_dir = ""\n', 'tasks_dir = "x"\nspool_dir = ""\n', "tasks_dir = [\n"):
        (tmp_path / "config.toml").write_text(broken)  # the full command line says what is wrong
        assert paths.quick_tasks_dir() is None
    monkeypatch.setenv("CODEXD_CONFIG", str(tmp_path / "missing.toml"))
    assert paths.quick_tasks_dir() is None


def test_list_json_is_the_parsed_list_byte_for_byte(tasks, monkeypatch):
    from codexd import api

    base = tasks.read_status("t1")
    for i, created in enumerate(["2025-10-30T00:00:00Z", "2025-10-31T00:00:00Z", "2025-10-31T00:00:00Z"]):
        status = base.with_(task_id=f"t{i + 2}", created_at=created)
        tasks.dir(status.task_id).mkdir()
        tasks.write_status(status.with_(daemon=replace(status.daemon, accepted_ns=10 - i)))
    expected = json.dumps(api.Tasks(tasks.root).list(), indent=2, ensure_ascii=False) + "\n"
    assert run(monkeypatch, entry.quick, ["list", "--json"]) == (0, expected)
    assert run(monkeypatch, commands.main, ["list", "--json"]) == (0, expected)
    (tasks.root / "t2" / "status.json").write_text(json.dumps(base.to_dict()))  # not the daemon's format
    assert entry.quick(["list", "--json"]) is None
    assert json.loads(run(monkeypatch, commands.main, ["list", "--json"])[1])[0]["task_id"]


def test_a_task_waiting_in_the_spool_hands_list_json_over(tasks, tmp_path, monkeypatch):
    assert entry.quick(["list", "--json"]) is not None  # no spool yet: nothing waits
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / ".hidden.md").write_text("Not yet.\n")
    (tmp_path / "spool" / "writing.md.part").write_text("Not yet.\n")
    assert entry.quick(["list", "--json"]) is not None
    (tmp_path / "spool" / "waiting.md").write_text("Do it.\n")
    assert entry.quick(["list", "--json"]) is None
    code, out = run(monkeypatch, commands.main, ["list", "--json"])
    assert code == 0 and [r["task_id"] for r in json.loads(out)] == ["waiting", "t1"]
    monkeypatch.delenv("CODEXD_SPOOL_DIR")  # the spool named in the settings file
    (tmp_path / "config.toml").write_text(f'spool_dir = "{tmp_path / "spool"}"\n')
    assert paths.quick_folder("spool_dir") == str(tmp_path / "spool")
    assert entry.quick(["list", "--json"]) is None


@pytest.mark.parametrize("argv", [["status", "t1", "--json"], ["list", "--json"]])
def test_the_quick_answer_names_a_tasks_folder_that_is_not_the_default_as_the_full_one_does(
    tasks, monkeypatch, argv
):
    said = []
    for how in (entry.quick, commands.main):
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        assert run(monkeypatch, how, argv)[0] == 0
        said.append(err.getvalue())
    assert said == [f"codexd: tasks in {tasks.root}\n"] * 2
    monkeypatch.setattr(paths, "default_folder", lambda key: str(tasks.root))
    assert entry.folder_note(str(tasks.root)) is None


QUICK_COMMANDS = [["status", "t1", "--json"], ["logs", "t1", "-n", "5"], ["list", "--json"]]


@pytest.mark.parametrize("argv", QUICK_COMMANDS)
@pytest.mark.parametrize("remembered", [False, True])
def test_a_config_that_sets_the_folders_is_answered_quickly_with_the_same_bytes(
    tasks, tmp_path, monkeypatch, argv, remembered
):
    """As every real config does: the file names the folders, relative to the current folder,
    and a variable may override it. The second time, the folders come from the quick cache."""
    monkeypatch.delenv("CODEXD_TASKS_DIR")
    monkeypatch.delenv("CODEXD_SPOOL_DIR")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # never the user's own
    monkeypatch.setattr(paths, "SETTLED_NS", -1 if remembered else 1 << 62)
    (tmp_path / "config.toml").write_text(
        'max_parallel = 2\ntasks_dir = "elsewhere"\nspool_dir = "spool"\n[notify]\nurls = []\n'
    )
    (tmp_path / "elsewhere").mkdir()
    for how_set in ("file", "variable"):
        if how_set == "file":
            (tmp_path / "config.toml").write_text(
                'max_parallel = 2\ntasks_dir = "tasks"\nspool_dir = "spool"\n[notify]\nurls = []\n'
            )
        else:  # the variable over the file's other folder
            (tmp_path / "config.toml").write_text('tasks_dir = "elsewhere"\nspool_dir = "spool"\n')
            monkeypatch.setenv("CODEXD_TASKS_DIR", "tasks")
        paths.quick_tasks_dir()  # the first call may remember the file
        said = []
        for how in (entry.quick, commands.main):
            monkeypatch.setattr(sys, "stderr", io.StringIO())
            said.append((run(monkeypatch, how, argv), sys.stderr.getvalue()))
        assert said[0] == said[1] and said[0][0][0] == 0, how_set
        assert said[0][1] in ("", f"codexd: tasks in {tasks.root}\n")
        assert os.path.exists(paths.cache_file(str(tmp_path / "config.toml"))) == remembered


def test_a_config_file_that_is_not_toml_goes_to_the_full_command_line(tasks, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SETTLED_NS", -1)
    (tmp_path / "config.toml").write_text("max_parallel = 2\n")
    assert entry.quick(["status", "t1", "--json"]) == 0  # remembered as good
    (tmp_path / "config.toml").write_text("max_parallel = = 2\n")
    for argv in QUICK_COMMANDS:
        assert entry.quick(argv) is None
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        code, out = run(monkeypatch, commands.main, argv)
        assert (code, out) == (2, "")
        assert err.getvalue().count("\n") == 1 and "is not valid TOML" in err.getvalue()
