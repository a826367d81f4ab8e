"""Where things are: the config file and the task and spool folders.

Kept light (tomllib, platformdirs) so that quick commands such as `status` and `list`
find the tasks without building the full settings object.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codexd.config import defaultdirs
from codexd.errors import ConfigError

ENV_CONFIG = "CODEXD_CONFIG"


def state_dir() -> Path:
    return Path(defaultdirs.state_dir())


def default_config_file() -> Path:
    return Path(defaultdirs.config_dir()) / "config.toml"


def expand(value: str | Path) -> Path:
    """`~` and relative paths made absolute, as the user meant them where they typed them."""
    return Path(defaultdirs.expand(str(value)))


def locate_config(explicit: str | Path | None) -> tuple[Path, bool]:
    """The config file and whether the user named it (then it must exist)."""
    if explicit:
        return expand(explicit), True
    from_env = os.environ.get(ENV_CONFIG)
    if from_env:
        return expand(from_env), True
    return default_config_file(), False


def read_toml(path: Path, required: bool) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(
                [f"config file {path} does not exist: create it (see config.example.toml) or fix the path"]
            ) from None
        return {}
    except OSError as exc:
        raise ConfigError([f"config file {path} cannot be read: {exc.strerror}"]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"config file {path} is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path} is not valid TOML: {exc}"]) from None


@dataclass(frozen=True)
class Locations:
    config_file: Path
    tasks_dir: Path
    spool_dir: Path
    type_names: frozenset[str]


def check_folder_setting(key: str, value: Any) -> None:
    """`tasks_dir` and `spool_dir` are non-empty paths (an empty one would mean the current folder
    to the daemon and the default folder to quick commands)."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ValueError(f"{key}: must be a folder path (a non-empty string); remove it for the default")


def _setting(env_key: str, table: dict[str, Any], key: str, default: Path) -> Path:
    value = os.environ.get(env_key, table.get(key))
    if value is None:
        return default
    try:
        check_folder_setting(key, value)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    return expand(value)


def resolve(explicit_config: str | Path | None = None) -> Locations:
    """The same precedence as the full settings: environment, then the file, then defaults."""
    path, required = locate_config(explicit_config)
    table = read_toml(path, required)
    base = state_dir()
    types = table.get("types")
    return Locations(
        config_file=path,
        tasks_dir=_setting("CODEXD_TASKS_DIR", table, "tasks_dir", base / "tasks"),
        spool_dir=_setting("CODEXD_SPOOL_DIR", table, "spool_dir", base / "spool"),
        type_names=frozenset(types) if isinstance(types, dict) else frozenset(),
    )
