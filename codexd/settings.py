"""The full settings, validated with pydantic-settings (used by the daemon, config, doctor).

Precedence: environment (`CODEXD_*`, `__` for nesting) over the TOML file over defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from codexd import endpoints, locations
from codexd.errors import ConfigError
from codexd.redact import redact

NoticeEvent = Literal["completed", "failed", "stalled", "cancelled", "restarted"]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodexSettings(_Table):
    command: list[str] = Field(default_factory=lambda: ["codex"], min_length=1)
    args: list[str] = Field(default_factory=list)
    # Codex runs the agent's commands in a login shell by default, and a login shell's
    # profile may reset PATH, hiding `codexd` from the agent. Off unless asked for.
    login_shell: bool = False


class HealthSettings(_Table):
    interval: float = Field(300, gt=0)  # the APScheduler sweep; stalls are caught sooner
    stall_timeout: float = Field(900, gt=0)
    max_restarts: int = Field(3, ge=0)  # stall restarts before the task fails
    max_retries: int = Field(5, ge=0)  # turns failed by a busy model endpoint, in a row
    backoff: float = Field(10, gt=0)  # first wait before a restart or retry; doubles each time
    backoff_max: float = Field(600, gt=0)
    check_timeout: float = Field(30, gt=0)  # each step of a health check


def _default_events() -> list[NoticeEvent]:
    return ["completed", "failed", "stalled"]


class NotifySettings(_Table):
    urls: list[SecretStr] = Field(default_factory=list)  # apprise URLs, each optionally `tag,tag=URL`
    events: list[NoticeEvent] = Field(default_factory=_default_events)
    backoff: float = Field(10, gt=0)  # first wait after a failed delivery; doubles each time
    backoff_max: float = Field(900, gt=0)
    expire: float = Field(86400, gt=0)  # a notice not delivered within this is given up
    timeout: float = Field(30, gt=0)  # one delivery attempt, whatever the endpoint does


class DaemonSettings(_Table):
    poll_interval: float = Field(0.1, gt=0, le=10)  # how often running tasks' events are read
    status_interval: float = Field(1.0, ge=0, le=60)  # progress reaches status.json at most this late
    rescan_interval: float = Field(60, gt=0)  # full spool rescan, behind the file watcher
    stop_grace: float = Field(10, gt=0)  # SIGTERM to SIGKILL when a task's tree is stopped
    stop_timeout: float = Field(60, gt=0)  # a daemon shutdown that takes longer is cut short
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class TaskTypeSettings(_Table):
    output_schema: Path | None = None  # JSON Schema for the final message (--output-schema)
    items_field: str | None = None  # list in the final JSON whose entries are the items
    outcome_field: str = "outcome"
    title_field: str = "title"

    @field_validator("output_schema")
    @classmethod
    def _schema_exists(cls, value: Path | None) -> Path | None:
        if value is not None:
            value = locations.expand(value)
            if not value.is_file():
                raise ValueError(f"output schema file {value} does not exist")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CODEXD_", env_nested_delimiter="__", extra="forbid")

    tasks_dir: Path = Field(default_factory=lambda: locations.state_dir() / "tasks")
    spool_dir: Path = Field(default_factory=lambda: locations.state_dir() / "spool")
    max_parallel: int = Field(4, ge=1)
    codex: CodexSettings = Field(default_factory=CodexSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    types: dict[str, TaskTypeSettings] = Field(default_factory=dict)

    @field_validator("tasks_dir", "spool_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return locations.expand(value)

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


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting (see config.example.toml for the keys)"
    return f"{where}: {message}"


def load(explicit_config: str | Path | None = None) -> tuple[Settings, Path]:
    """The effective settings and the config file they came from; ConfigError lists problems."""
    path, required = locations.locate_config(explicit_config)
    locations.read_toml(path, required)  # one clear line for a missing or broken file
    bound = type("BoundSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
    try:
        loaded = bound()
    except ValidationError as exc:
        raise ConfigError([_problem(e) for e in exc.errors()]) from None
    entries = [u.get_secret_value() for u in loaded.notify.urls]
    redact.add([*entries, *(endpoints.parse(e).url for e in entries)])  # masked in all messages from now on
    return loaded, path


def shown(settings: Settings) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    data["notify"]["urls"] = [endpoints.parse(u.get_secret_value()).shown for u in settings.notify.urls]
    return data
