"""Where things are: which config file, and which tasks and spool folders.

The one place their precedence is decided. The config file: `--config`, else
$CODEXD_CONFIG, else config.toml in the platform config folder. A folder: its CODEXD_*
variable, else the file's setting, else the platform state folder. The full settings
(settings.py), the API and the quick commands (cli/entry.py) all ask here, so this module
needs `os` alone: tomllib, pathlib and the error types are imported by the calls that use them.
Importing tomllib costs more than starting Python, so the quick commands remember the folders
of a config file that parsed, in the user's cache folder, for as long as the file is unchanged.
"""

from __future__ import annotations

import os

from codexd.config import defaultdirs

TYPE_CHECKING = False  # not typing's: importing typing costs the quick commands ~5 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

ENV_CONFIG = "CODEXD_CONFIG"
# Each folder setting: the variable that overrides it, and its folder under the state folder.
FOLDERS = {"tasks_dir": ("CODEXD_TASKS_DIR", "tasks"), "spool_dir": ("CODEXD_SPOOL_DIR", "spool")}


def config_file(explicit: str | os.PathLike[str] | None = None) -> tuple[str, bool]:
    """The config file and whether the user named it (then it must exist)."""
    named = explicit or os.environ.get(ENV_CONFIG)
    if named:
        return defaultdirs.expand(str(named)), True
    return os.path.join(defaultdirs.config_dir(), "config.toml"), False


def folder_value(key: str, table: Mapping[str, Any]) -> Any:
    """What the user set folder `key` to: its variable over the file; None leaves the default."""
    return os.environ.get(FOLDERS[key][0], table.get(key))


def default_folder(key: str) -> str:
    return os.path.join(defaultdirs.state_dir(), FOLDERS[key][1])


def check_folder_setting(key: str, value: Any) -> None:
    """`tasks_dir` and `spool_dir` are non-empty paths (an empty one would mean the current folder
    to the daemon and the default folder to quick commands)."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ValueError(f"{key}: must be a folder path (a non-empty string); remove it for the default")


def folder(key: str, table: Callable[[], Mapping[str, Any]]) -> str:
    """The folder `key` names, absolute; `table()` (the file's settings) is read only when no
    variable decides. ValueError says, in one line, what is wrong."""
    value = os.environ.get(FOLDERS[key][0])
    if value is None:
        value = folder_value(key, table())
    if value is None:
        return default_folder(key)
    check_folder_setting(key, value)
    return defaultdirs.expand(str(value))


def folders(table: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Every folder of FOLDERS as `folder()` decides it from the file's settings `table`, and a
    line for each that is wrong (settings.load reports them with its other problems)."""
    found: dict[str, str] = {}
    problems: list[str] = []
    for key in FOLDERS:
        try:
            found[key] = folder(key, lambda: table)
        except ValueError as exc:
            problems.append(str(exc))
    return found, problems


def read_bytes(path: str, required: bool) -> bytes:
    """The config file's bytes (none when it is absent and nobody named it); ValueError says why not."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        if required:
            raise ValueError(
                f"config file {path} does not exist: create it (see config.example.toml) or fix the path"
            ) from None
        return b""
    except OSError as exc:
        raise ValueError(f"config file {path} cannot be read: {exc.strerror}") from None


def parse(raw: bytes, path: str) -> dict[str, Any]:
    """The settings in the file's bytes; ValueError says why they cannot be read."""
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from None


def quick_tasks_dir() -> str | None:
    """The tasks folder `resolve()` finds, with `os` alone while the file is as last parsed; None
    when there is a problem for the full command line to report."""
    return quick_folder("tasks_dir")


def quick_folder(key: str) -> str | None:
    """quick_tasks_dir() for any folder of FOLDERS."""
    try:
        table = _quick_table()  # even when variables decide: a broken file is the full path's to report
        return folder(key, lambda: table)
    except ValueError:
        return None


def _quick_table() -> Mapping[str, Any]:
    """The file's folder settings, each folder checked as `resolve()` checks them. Parsed with
    tomllib (which costs more than starting Python) only when the file changed since the last
    parse; else the folders remembered in the cache, with `os` alone. A file that does not
    parse is never remembered: the full command line reports it."""
    path, named = config_file()
    try:
        info = os.stat(path)
    except OSError:
        info = None
    stamp = _stamp(info) if info is not None else ""
    table = _remembered(path, stamp) if info is not None else None
    if table is None:
        raw = read_bytes(path, named)
        table = parse(raw, path) if raw else {}  # no file: no tomllib either
        if info is not None:
            _remember(path, stamp, info, table)
    for each in FOLDERS:
        folder(each, lambda: table)
    return table


# The cache of the file's folder settings: one small file per config file, valid while the config
# file has the same identity, size and change times. A file changed within SETTLED_NS of being
# read could change again within one tick of the file system's clock, unseen: not remembered.
CACHE_FORMAT = "codexd-quick-folders 1"
SETTLED_NS = 2_000_000_000


def _stamp(info: os.stat_result) -> str:
    return f"{info.st_dev} {info.st_ino} {info.st_size} {info.st_mtime_ns} {info.st_ctime_ns}"


def cache_file(config: str) -> str:
    """Where the folders of `config` are remembered (its name: a FNV-1a hash of the path)."""
    digest = 0x811C9DC5
    for byte in config.encode("utf-8", "surrogateescape"):
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return os.path.join(defaultdirs.cache_dir(), f"folders-{digest:08x}")


def _remembered(config: str, stamp: str) -> dict[str, str] | None:
    try:
        with open(cache_file(config), encoding="utf-8", errors="surrogateescape") as f:
            fields = f.read().split("\0")
    except OSError:
        return None
    if fields[:3] != [CACHE_FORMAT, config, stamp] or len(fields) % 2 == 0:
        return None
    return dict(zip(fields[3::2], fields[4::2], strict=True))


def _remember(config: str, stamp: str, info: os.stat_result, table: Mapping[str, Any]) -> None:
    """Best effort: a cache that cannot be written only means the next call parses again."""
    import time

    values = {key: table[key] for key in FOLDERS if key in table}
    settled = time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) > SETTLED_NS
    if not settled or not all(isinstance(v, str) and "\0" not in v for v in values.values()):
        return
    text = "\0".join([CACHE_FORMAT, config, stamp, *(part for item in values.items() for part in item)])
    target = cache_file(config)
    temporary = f"{target}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        with open(temporary, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        os.replace(temporary, target)
    except OSError:
        import contextlib  # only here: it costs the quick commands a millisecond

        with contextlib.suppress(OSError):
            os.unlink(temporary)


# -- the full command line and the daemon: Path objects, and problems as ConfigError ---------------


class Locations:
    """Where one configuration puts things."""

    __slots__ = ("config_file", "spool_dir", "tasks_dir", "type_names")

    def __init__(self, config_file: Path, tasks_dir: Path, spool_dir: Path, type_names: frozenset[str]):
        self.config_file, self.tasks_dir, self.spool_dir = config_file, tasks_dir, spool_dir
        self.type_names = type_names


def expand(value: str | os.PathLike[str]) -> Path:
    """`~` and relative paths made absolute, as the user meant them where they typed them."""
    from pathlib import Path

    return Path(defaultdirs.expand(str(value)))


def locate_config(explicit: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """config_file() as a Path."""
    path, named = config_file(explicit)
    return expand(path), named


def named_config(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The config file the user named (a service's daemon is started with it), or None."""
    path, named = locate_config(explicit)
    return path if named else None


def read_toml(path: str | os.PathLike[str], required: bool) -> dict[str, Any]:
    """The file's settings ({} when it is absent and nobody named it); ConfigError if they cannot be read."""
    try:
        return parse(read_bytes(str(path), required), str(path))
    except ValueError as exc:
        raise _config_error(exc) from None


def resolve(explicit_config: str | os.PathLike[str] | None = None) -> Locations:
    """The config file and the folders it and the environment choose; ConfigError if one is wrong."""
    from pathlib import Path

    path, required = locate_config(explicit_config)
    table = read_toml(path, required)
    try:
        tasks_dir, spool_dir = [Path(folder(key, lambda: table)) for key in FOLDERS]
    except ValueError as exc:
        raise _config_error(exc) from None
    types = table.get("types")
    return Locations(path, tasks_dir, spool_dir, frozenset(types) if isinstance(types, dict) else frozenset())


def _config_error(exc: ValueError) -> Exception:
    from codexd.errors import ConfigError

    return ConfigError([str(exc)])
