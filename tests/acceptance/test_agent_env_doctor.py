"""`codexd doctor` says what of the environment a task's Codex sees: names, never values."""

from __future__ import annotations


def test_doctor_shows_what_passes_and_what_is_withheld(env):
    home = env.root / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text('[model_providers.mock]\nenv_key = "MOCK_API_KEY"\n')
    env.set(
        CODEX_HOME=str(home),
        MOCK_API_KEY="mock-value-4711",
        EXTRA_VAR="extra-value-4711",
        AWS_SECRET_ACCESS_KEY="aws-value-4711",
        SLACK_WEBHOOK="https://hooks.example/hook-4711",
        CODEXD_NOTIFY__URLS='["json://127.0.0.1:9/notify-4711"]',
        CODEXD_CODEX__ENV='["EXTRA_VAR", "UNSET_VAR"]',
    )
    env.vars.pop("UNSET_VAR", None)
    out = env.codexd("doctor").stdout
    passes = next(line for line in out.splitlines() if line.startswith("ok    agent env: passes "))
    withholds = next(line for line in out.splitlines() if line.startswith("ok    agent env: withholds "))
    for name in ("CODEX_HOME", "MOCK_API_KEY", "EXTRA_VAR", "PATH"):
        assert name in passes
    for name in ("AWS_SECRET_ACCESS_KEY", "SLACK_WEBHOOK", "CODEXD_NOTIFY__URLS"):
        assert name not in passes
    assert "AWS_SECRET_ACCESS_KEY" in withholds and "codex.env" in withholds
    assert "warn  agent env: codex.env names UNSET_VAR, not set here" in out
    assert "4711" not in out


def test_config_show_and_check_speak_of_codex_env(env):
    env.set(CODEXD_CODEX__ENV='["EXTRA_VAR"]')
    assert '"EXTRA_VAR"' in env.codexd("config", "show").stdout
    env.set(CODEXD_CODEX__ENV='["CODEXD_NOTIFY__URLS"]')
    done = env.codexd("config", "check")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "codexd: codex.env: CODEXD_NOTIFY__URLS is codexd's own and never reaches the agent: "
        "remove it from codex.env"
    ]
