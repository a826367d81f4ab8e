"""The folders' precedence, decided once for the quick commands and the full settings, and the
cache that lets the quick commands skip tomllib while the config file is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codexd.config import paths, settings
from codexd.errors import ConfigError

pytestmark = pytest.mark.timeout(30)

# (--config flag, $CODEXD_CONFIG, $CODEXD_TASKS_DIR, tasks_dir in the file it names) -> tasks folder.
# "flag.toml" sets flag-tasks, "env.toml" sets env-file-tasks, the platform config sets xdg-tasks.
PRECEDENCE = [
    (None, None, None, "state/codexd/tasks"),  # nothing set anywhere: the default
    (None, None, "var-tasks", "var-tasks"),  # the variable alone
    (None, "env.toml", None, "env-file-tasks"),  # the file named by $CODEXD_CONFIG
    (None, "env.toml", "var-tasks", "var-tasks"),  # the variable over the file
    ("flag.toml", "env.toml", None, "flag-tasks"),  # --config over $CODEXD_CONFIG
    ("flag.toml", "env.toml", "var-tasks", "var-tasks"),  # the variable over any file
    (None, "empty.toml", None, "state/codexd/tasks"),  # a file that does not set it: the default
]


@pytest.fixture
def configs(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.split("_")[1].lower()))
    for name in ("CODEXD_CONFIG", "CODEXD_TASKS_DIR", "CODEXD_SPOOL_DIR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "flag.toml").write_text('tasks_dir = "flag-tasks"\n')  # relative: from the current folder
    (tmp_path / "env.toml").write_text(f'tasks_dir = "{tmp_path / "env-file-tasks"}"\n')
    (tmp_path / "empty.toml").write_text("max_parallel = 2\n")
    (tmp_path / "config" / "codexd").mkdir(parents=True)
    (tmp_path / "config" / "codexd" / "config.toml").write_text('tasks_dir = "xdg-tasks"\n')
    return tmp_path


@pytest.mark.parametrize(("flag", "env_config", "variable", "expected"), PRECEDENCE)
def test_every_reader_finds_the_folder_the_precedence_table_says(
    configs, monkeypatch, flag, env_config, variable, expected
):
    if env_config:
        monkeypatch.setenv("CODEXD_CONFIG", str(configs / env_config))
    else:
        monkeypatch.setenv("CODEXD_CONFIG", str(configs / "empty.toml"))
    if variable:
        monkeypatch.setenv("CODEXD_TASKS_DIR", variable)
    want = configs / expected
    assert paths.resolve(flag).tasks_dir == settings.load(flag)[0].tasks_dir == want
    if flag is None:  # the quick commands take no --config: they hand a flag to the full command line
        assert paths.quick_tasks_dir() == str(want)


def test_without_a_named_file_the_platform_config_decides(configs):
    assert paths.quick_tasks_dir() == str(configs / "xdg-tasks")
    assert settings.load()[0].tasks_dir == paths.resolve().tasks_dir == configs / "xdg-tasks"


def test_a_tilde_is_the_home_folder_for_every_reader(configs, monkeypatch):
    monkeypatch.setenv("HOME", str(configs / "home"))
    monkeypatch.setenv("CODEXD_CONFIG", str(configs / "c.toml"))
    (configs / "c.toml").write_text('tasks_dir = "~/tasks"\nspool_dir = "~/spool"\n')
    assert paths.quick_tasks_dir() == str(configs / "home" / "tasks")
    assert paths.quick_folder("spool_dir") == str(configs / "home" / "spool")
    loaded = settings.load()[0]
    assert (loaded.tasks_dir, loaded.spool_dir) == (configs / "home" / "tasks", configs / "home" / "spool")


@pytest.fixture
def settled(configs, monkeypatch) -> Path:
    """A config file old enough to be remembered (the settle time is for files being edited)."""
    monkeypatch.setattr(paths, "SETTLED_NS", 0)
    config = configs / "c.toml"
    config.write_text(f'tasks_dir = "{configs / "one"}"\n[notify]\nurls = []\n')
    monkeypatch.setenv("CODEXD_CONFIG", str(config))
    return config


def test_an_unchanged_file_is_answered_from_the_cache_without_tomllib(settled, configs, monkeypatch):
    assert paths.quick_tasks_dir() == str(configs / "one")
    assert Path(paths.cache_file(str(settled))).is_file()

    def no_parsing(raw: bytes, path: str) -> dict[str, object]:
        raise AssertionError("parsed again")

    monkeypatch.setattr(paths, "parse", no_parsing)
    assert paths.quick_tasks_dir() == str(configs / "one")
    monkeypatch.setenv("CODEXD_TASKS_DIR", str(configs / "var"))  # the variables still come first
    assert paths.quick_tasks_dir() == str(configs / "var")


def test_a_changed_file_is_read_again_even_at_the_same_size(settled, configs):
    assert paths.quick_tasks_dir() == str(configs / "one")
    settled.write_text(f'tasks_dir = "{configs / "two"}"\n[notify]\nurls = []\n')
    assert paths.quick_tasks_dir() == str(configs / "two")
    assert settings.load()[0].tasks_dir == configs / "two"


def test_a_file_just_written_is_not_remembered(configs, monkeypatch):
    monkeypatch.setenv("CODEXD_CONFIG", str(configs / "env.toml"))
    assert paths.quick_tasks_dir() == str(configs / "env-file-tasks")
    assert not os.path.exists(paths.cache_file(str(configs / "env.toml")))


def test_a_broken_file_is_never_answered_quickly_even_after_a_good_one(settled, configs):
    assert paths.quick_tasks_dir() == str(configs / "one")
    for broken in ("tasks_dir = [\n", 'tasks_dir = "x"\nmax_parallel = = 2\n', "tasks_dir = 5\n"):
        settled.write_text(broken)
        assert paths.quick_tasks_dir() is None  # the full command line says what is wrong
        with pytest.raises(ConfigError):
            settings.load()


def test_a_cache_that_cannot_be_written_or_read_only_costs_a_parse(settled, configs, monkeypatch):
    (configs / "cache").write_text("a file where the cache folder would be")
    assert paths.quick_tasks_dir() == str(configs / "one")
    (configs / "cache").unlink()
    assert paths.quick_tasks_dir() == str(configs / "one")
    Path(paths.cache_file(str(settled))).write_text("garbage\0x")
    assert paths.quick_tasks_dir() == str(configs / "one")
