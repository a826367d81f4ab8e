"""The agent's environment is an allowlist: what Codex needs, what the user names, nothing of codexd's."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexd.codex import process
from codexd.config.settings import CodexSettings
from codexd.errors import ConfigError

SECRETS = {
    "CODEXD_NOTIFY__URLS": '["slack://secret-notify"]',
    "CODEXD_TASKS_DIR": "/srv/tasks",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "SLACK_WEBHOOK": "https://hooks.example/secret",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "WATCHDOG_USEC": "1000",
    "DATABASE_URL": "postgres://u:p@db/x",
}
NEEDED = {
    "PATH": "/usr/bin",
    "HOME": "/home/u",
    "USER": "u",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TERM": "xterm",
    "HTTPS_PROXY": "http://proxy:3128",
    "no_proxy": "localhost",
    "SSL_CERT_FILE": "/etc/ca.pem",
    "SSH_AUTH_SOCK": "/tmp/agent.sock",
    "XDG_CONFIG_HOME": "/home/u/.config",
    "OPENAI_API_KEY": "sk-openai",
}


def codex_home(tmp_path: Path, text: str) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(text)
    return home


def env_of(environ: dict[str, str], extra: list[str] | None = None) -> dict[str, str]:
    return process.child_env("t1", Path("/tasks/t1"), extra or [], environ=environ)


def test_only_what_codex_needs_passes(tmp_path: Path) -> None:
    home = codex_home(tmp_path, "")
    got = env_of({**SECRETS, **NEEDED, "CODEX_HOME": str(home)})
    for name in SECRETS:
        assert name not in got
    for name, value in NEEDED.items():
        if name != "PATH":
            assert got[name] == value
    assert got["CODEX_HOME"] == str(home)
    assert got["CODEXD_TASK_ID"] == "t1"
    assert got["CODEXD_TASK_DIR"] == "/tasks/t1"
    assert got["PATH"].endswith("/usr/bin")


def test_every_provider_env_key_passes(tmp_path: Path) -> None:
    home = codex_home(
        tmp_path,
        'model_provider = "mock"\n[model_providers.mock]\nenv_key = "MOCK_API_KEY"\n'
        '[model_providers.other]\nenv_key = "OTHER_KEY"\n',
    )
    got = env_of({"CODEX_HOME": str(home), "MOCK_API_KEY": "m", "OTHER_KEY": "o", "UNNAMED_KEY": "u"})
    assert got["MOCK_API_KEY"] == "m"
    assert got["OTHER_KEY"] == "o"
    assert "UNNAMED_KEY" not in got


BROKEN = ["this is [not toml", "model_providers = 3\n", "[model_providers.x]\nenv_key = 4\n"]


@pytest.mark.parametrize("text", BROKEN)
def test_broken_codex_config_is_tolerated(tmp_path: Path, text: str) -> None:
    home = codex_home(tmp_path, text)
    got = env_of({"CODEX_HOME": str(home), "HOME": "/h", "AWS_SECRET_ACCESS_KEY": "s"})
    assert got["HOME"] == "/h"
    assert "AWS_SECRET_ACCESS_KEY" not in got


def test_missing_codex_config_reads_home_default(tmp_path: Path) -> None:
    (tmp_path / ".codex").mkdir()
    (tmp_path / ".codex" / "config.toml").write_text('[model_providers.az]\nenv_key = "AZ_KEY"\n')
    assert env_of({"HOME": str(tmp_path), "AZ_KEY": "a"})["AZ_KEY"] == "a"
    assert "AZ_KEY" not in env_of({"HOME": str(tmp_path / "nowhere"), "AZ_KEY": "a"})


def test_codex_env_adds_names_but_never_codexds_own(tmp_path: Path) -> None:
    environ = {**SECRETS, "EXTRA_VAR": "x", "CODEX_HOME": str(tmp_path)}
    got = env_of(environ, ["EXTRA_VAR", "CODEXD_NOTIFY__URLS", "NOTIFY_SOCKET"])
    assert got["EXTRA_VAR"] == "x"
    assert "CODEXD_NOTIFY__URLS" not in got
    assert "NOTIFY_SOCKET" not in got


def test_a_provider_env_key_naming_codexds_own_is_withheld(tmp_path: Path) -> None:
    home = codex_home(tmp_path, '[model_providers.x]\nenv_key = "CODEXD_NOTIFY__URLS"\n')
    assert "CODEXD_NOTIFY__URLS" not in env_of({**SECRETS, "CODEX_HOME": str(home)})


def test_codex_env_is_checked() -> None:
    assert CodexSettings(env=["EXTRA_VAR", "LC_X"]).env == ["EXTRA_VAR", "LC_X"]
    for bad in (["CODEXD_NOTIFY__URLS"], ["NOTIFY_SOCKET"], ["WATCHDOG_USEC"], ["A=B"], [""], ["1X"]):
        with pytest.raises(ValueError, match="env"):
            CodexSettings(env=bad)


def test_config_check_refuses_codexds_own_in_one_line(tmp_path: Path) -> None:
    from codexd.config import settings

    path = tmp_path / "c.toml"
    path.write_text('[codex]\nenv = ["CODEXD_NOTIFY__URLS"]\n')
    with pytest.raises(ConfigError) as caught:
        settings.load(path)
    text = str(caught.value)
    assert "CODEXD_NOTIFY__URLS" in text and "codex.env" in text
