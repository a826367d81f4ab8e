"""Each rule lives once: where the config and the folders are, and how outcomes are said."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexd.config import paths, settings
from codexd.errors import ConfigError
from codexd.present import views, vocabulary

pytestmark = pytest.mark.timeout(30)


def test_the_config_file_is_the_named_one_then_the_variable_then_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CODEXD_CONFIG", raising=False)
    assert paths.config_file() == (str(tmp_path / "xdg" / "codexd" / "config.toml"), False)
    monkeypatch.setenv("CODEXD_CONFIG", str(tmp_path / "env.toml"))
    assert paths.config_file() == (str(tmp_path / "env.toml"), True)
    assert paths.config_file(tmp_path / "named.toml") == (str(tmp_path / "named.toml"), True)
    assert paths.named_config(None) == tmp_path / "env.toml"


def test_a_folder_is_its_variable_then_the_file_then_the_default_for_every_reader(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text(f'tasks_dir = "{tmp_path / "file-tasks"}"\n')
    monkeypatch.setenv("CODEXD_CONFIG", str(config))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("CODEXD_SPOOL_DIR", str(tmp_path / "env-spool"))
    where, (loaded, _) = paths.resolve(), settings.load()
    quick = Path(paths.quick_tasks_dir() or "")
    assert where.tasks_dir == loaded.tasks_dir == quick == tmp_path / "file-tasks"
    assert where.spool_dir == loaded.spool_dir == tmp_path / "env-spool"
    monkeypatch.setenv("CODEXD_TASKS_DIR", " ")
    with pytest.raises(ConfigError, match="tasks_dir: must be a folder path"):
        paths.resolve()
    with pytest.raises(ConfigError, match="tasks_dir: must be a folder path"):
        settings.load()
    assert paths.quick_tasks_dir() is None


def test_an_outcome_is_said_the_same_way_everywhere():
    assert vocabulary.outcome_text("changes_requested") == "⚠️ changes requested"
    assert vocabulary.outcome_label("changes_requested") == "⚠️ Changes requested"
    assert vocabulary.outcome_label("skipped_twice") == "Skipped twice"
    item = {"title": "#626 - toml upgrade", "outcome": "approved"}
    assert vocabulary.item_line(item) == "✅ #626 - toml upgrade (approved)"
    task = {"task_id": "t", "type": "generic", "status": "queued", "created_at": "x"}
    assert views.task_row(task) == ("t", "generic", "queued", "-", "-", "0", "-")
    assert views.task_table([task]).splitlines()[0].split() == list(views.TASK_COLUMNS)
