"""The full settings, validated with pydantic-settings (used by the daemon, config, doctor).

Precedence: environment (`CODEXD_*`, `__` for nesting) over the TOML file over defaults.
Which file, and the tasks and spool folders, are decided by `paths` (the quick commands
ask it too); pydantic-settings reads the rest. The notification URLs are secrets:
`load()` registers them with `redact` in one call, `keep_secret`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from codexd import jsonlines
from codexd.codex import agentenv, cmdline
from codexd.config import paths
from codexd.config.limits import MAX_PARALLEL, MAX_SECONDS, MAX_TRIES
from codexd.errors import ConfigError
from codexd.notify import endpoints
from codexd.notify.redact import mask_url, redact

ENV_PREFIX = "CODEXD_"
NoticeEvent = Literal[
    "completed", "failed", "stalled", "cancelled", "restarted", "usage_limit", "usage_resumed"
]


# Every duration is finite and at most a year, and a count is what a machine can do (limits.py).
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
Tries = Annotated[int, Field(ge=0, le=MAX_TRIES)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CodexSettings(_Table):
    command: list[str] = Field(default_factory=lambda: ["codex"], min_length=1)
    # Codex runs the agent's commands in a login shell by default, and a login shell's
    # profile may reset PATH, hiding `codexd` from the agent. Off unless asked for.
    login_shell: bool = False
    args: list[str] = Field(default_factory=list)  # after login_shell: its check needs it
    env: list[str] = Field(default_factory=list)  # names passed to the agent beyond the allowlist

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        found = [p for p in map(agentenv.name_problem, value) if p]
        if found:
            raise ValueError("\n".join(found))
        return value

    @field_validator("args")
    @classmethod
    def _args_fit(cls, value: list[str], info: ValidationInfo) -> list[str]:
        found = cmdline.problems(value, bool(info.data.get("login_shell", False)))
        if found:
            raise ValueError("\n".join(found))
        return value


class HealthSettings(_Table):
    interval: Seconds = 300  # the APScheduler sweep; stalls are caught sooner
    stall_timeout: Seconds = 900
    max_restarts: Tries = 3  # stall restarts before the task fails
    max_retries: Tries = 5  # turns failed by a busy model endpoint, in a row
    backoff: Seconds = 10  # first wait before a restart or retry; doubles each time
    backoff_max: Seconds = 600
    check_timeout: Seconds = 30  # each step of a health check
    timeout: Seconds | None = None  # wall time for a whole task, across restarts; None: no limit
    max_tokens: Annotated[int, Field(ge=1)] | None = None  # tokens for a whole task; None: no limit
    usage_limit_wait: Seconds = 900  # the account's usage limit reached, no reset time given: doubles
    # A silent task whose tree keeps working (CPU, growing files) is not stalled, for this long
    # without progress at most; and "working" is more than `busy_cpu` of one core (daemon/busy.py).
    busy_timeout: Seconds = 7200
    busy_cpu: float = Field(0.1, gt=0, le=1024, allow_inf_nan=False)

    @model_validator(mode="after")
    def _busy_outlasts_a_stall(self) -> HealthSettings:
        # Checked when set: a long stall_timeout alone keeps working (busy-ness then extends nothing).
        if "busy_timeout" in self.model_fields_set and self.busy_timeout <= self.stall_timeout:
            raise ValueError(
                f"busy_timeout ({self.busy_timeout:g} s) must be longer than stall_timeout "
                f"({self.stall_timeout:g} s): raise health.busy_timeout or lower health.stall_timeout"
            )
        return self


def _default_events() -> list[NoticeEvent]:
    return ["completed", "failed", "stalled"]


class NotifySettings(_Table):
    urls: list[SecretStr] = Field(default_factory=list)  # apprise URLs, each optionally `tag,tag=URL`
    events: list[NoticeEvent] = Field(default_factory=_default_events)
    # The account's usage-limit notices (usage_limit, usage_resumed) go out whatever `events`
    # lists, unless this is false: a queue that stops for hours must not stop unseen.
    account: bool = True
    backoff: Seconds = 10  # first wait after a failed delivery; doubles each time
    backoff_max: Seconds = 900
    expire: Seconds = 86400  # a notice not delivered within this is given up
    timeout: Seconds = 30  # one delivery attempt, whatever the endpoint does


class DaemonSettings(_Table):
    poll_interval: float = Field(0.1, gt=0, le=10)  # the loop sleeps at most this (daemon/taskwatch wakes it)
    status_interval: float = Field(1.0, ge=0, le=60)  # progress reaches status.json at most this late
    rescan_interval: Seconds = 60  # full spool rescan, behind the file watcher
    stop_grace: Seconds = 10  # SIGTERM to SIGKILL when a task's tree is stopped
    stop_timeout: Seconds = 60  # a daemon shutdown that takes longer is cut short
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class QueueSettings(_Table):
    """The shared queue for a team (docs/scale-out.md): off without `url`."""

    url: SecretStr | None = None  # postgresql://...: every daemon with this url takes tasks from one queue
    name: str = Field(default_factory=lambda: platform.node() or "codexd", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    takeover_after: Seconds = 120  # a daemon silent this long has its tasks resumed by another

    @field_validator("url")
    @classmethod
    def _postgres(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a PostgreSQL url: postgresql://USER:PASSWORD@HOST/DATABASE")
        return value


class TaskTypeSettings(_Table):
    output_schema: Path | None = None  # JSON Schema for the final message (--output-schema)
    items_field: str | None = None  # list in the final JSON whose entries are the items
    outcome_field: str = "outcome"
    title_field: str = "title"

    @field_validator("output_schema")
    @classmethod
    def _schema_exists(cls, value: Path | None) -> Path | None:
        if value is not None:
            value = paths.expand(value)
            if not value.is_file():
                raise ValueError(f"output schema file {value} does not exist")
        return value


PerMillion = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]


class PriceSettings(_Table):
    """`[prices."MODEL"]`: USD per million tokens, for estimated costs (none without it)."""

    input: PerMillion
    cached_input: PerMillion
    output: PerMillion  # Codex counts reasoning within output tokens


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CODEXD_", env_nested_delimiter="__", extra="forbid", allow_inf_nan=False
    )

    tasks_dir: Path = Field(default_factory=lambda: Path(paths.default_folder("tasks_dir")))
    spool_dir: Path = Field(default_factory=lambda: Path(paths.default_folder("spool_dir")))
    max_parallel: int = Field(4, ge=1, le=MAX_PARALLEL)
    # How a task's whole process tree is kept together and ended (see containment.py).
    process_trees: Literal["auto", "cgroup", "scope", "group"] = "auto"
    codex: CodexSettings = Field(default_factory=CodexSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    types: dict[str, TaskTypeSettings] = Field(default_factory=dict)
    # Tasks without a worktree of their own may run at once in one folder (else one waits).
    share_folders: bool = False
    worktree: bool = False  # every task in a git worktree of its own unless it says worktree = false
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    queue: QueueSettings = Field(default_factory=QueueSettings)

    @field_validator("tasks_dir", "spool_dir", mode="before")
    @classmethod
    def _a_folder(cls, value: Any, info: ValidationInfo) -> Any:
        paths.check_folder_setting(str(info.field_name), value)  # the same rule as the light path
        return value

    @field_validator("tasks_dir", "spool_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return paths.expand(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def _problems(error: Any) -> list[str]:
    where = ".".join(str(part) for part in error["loc"]) or "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting (see config.example.toml for the keys)"
    if error["type"] == "finite_number":
        message = "must be a finite number"
    if error["type"] == "less_than_equal" and error.get("ctx", {}).get("le") == MAX_SECONDS:
        message = f"must be at most {MAX_SECONDS} seconds (a year)"
    return [line if line.startswith(f"{where}:") else f"{where}: {line}" for line in message.splitlines()]


def _is_structured(annotation: Any) -> bool:
    """A list, a dict or a table: what an environment variable must give as JSON."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_structured(get_args(annotation)[0])
    return origin in (list, dict) or (isinstance(annotation, type) and issubclass(annotation, BaseModel))


def _field_at(path: list[str]) -> Any:
    """The type a `CODEXD_A__B` variable sets, or None when it names no setting."""
    model: Any = Settings
    annotation: Any = None
    for part in path:
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]  # a key of the table: its value type
        elif isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            annotation = model.model_fields[part].annotation
        else:
            return None
        model = annotation
    return annotation


def env_problems(environ: Mapping[str, str]) -> list[str]:
    """Environment overrides of lists and tables that are not JSON: one line each."""
    found = []
    for name, value in sorted(environ.items()):
        annotation = _field_at(_env_path(name)) if name.upper().startswith(ENV_PREFIX) else None
        if not _is_structured(annotation):
            continue
        if jsonlines.value(value) is jsonlines.NOT_JSON:  # deep nesting and NaN too
            kind, like = ("list", '["..."]') if get_origin(annotation) is list else ("table", '{"key": ...}')
            found.append(f"{name} is not valid JSON: a {kind} set by environment must be JSON, like '{like}'")
    return found


def _env_path(name: str) -> list[str]:
    return name[len(ENV_PREFIX) :].lower().split("__")


def load(explicit_config: str | Path | None = None) -> tuple[Settings, Path]:
    """The effective settings and the config file they came from; ConfigError lists problems."""
    path, required = paths.locate_config(explicit_config)
    table = paths.read_toml(path, required)  # one clear line for a missing or broken file
    bound = type("BoundSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
    env = env_problems(os.environ)
    if env:
        raise ConfigError(env)
    folders, problems = paths.folders(table)  # the quick commands' very function: they cannot disagree
    try:  # a folder in error is reported once, from `problems`, not again by pydantic
        loaded = bound(**{key: folders.get(key) or paths.default_folder(key) for key in paths.FOLDERS})
    except ValidationError as exc:
        raise ConfigError(problems + [line for e in exc.errors() for line in _problems(e)]) from None
    except SettingsError as exc:  # what env_problems did not foresee
        raise ConfigError([f"settings from the environment: {exc}"]) from None
    if problems:
        raise ConfigError(problems)
    keep_secret([u.get_secret_value() for u in loaded.notify.urls])
    if loaded.queue.url is not None:
        redact.add([loaded.queue.url.get_secret_value()])  # its password, in any message
    return loaded, path


def keep_secret(entries: list[str]) -> None:
    """Notification URL entries, and the URL in each, are masked in every message from now on."""
    redact.add([*entries, *(endpoints.parse(e).url for e in entries)])


def shown(settings: Settings) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    data["notify"]["urls"] = [endpoints.parse(u.get_secret_value()).shown for u in settings.notify.urls]
    if settings.queue.url is not None:
        data["queue"]["url"] = mask_url(settings.queue.url.get_secret_value())
    return data
