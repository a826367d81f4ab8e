"""Settings that cannot work are refused, in one line each, by `config check`, `doctor` and
at daemon start; the installed Codex judges `codex.args` in `doctor`."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.conftest import real_codex, wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(60)]


def refused(done, *words: str) -> list[str]:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    for word in words:
        assert any(word in line for line in lines), (word, lines)
    return lines


def test_conflicting_codex_args_are_refused_each_in_one_line(env):
    config = env.write(
        "c.toml", '[codex]\nargs = ["--skip-git-repo-check", "-C", "/x", "--ephemeral", "-o", "f.txt"]\n'
    )
    env.set(CODEXD_CONFIG=str(config))
    lines = refused(env.codexd("config", "check"), "-C cannot be used", "--ephemeral", "-o cannot be used")
    assert len(lines) == 3 and all(line.startswith("codexd: codex.args: ") for line in lines), lines
    started = refused(env.codexd("daemon"), "-C cannot be used", "--ephemeral", "-o cannot be used")
    assert started == lines  # the same lines at daemon start


def test_a_merged_flag_passes_config_check(env):
    env.set(CODEXD_CODEX__ARGS=json.dumps(["--skip-git-repo-check", "--json"]))
    done = env.codexd("config", "check")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", [["config", "check"], ["doctor"], ["daemon"], ["config", "show"]])
@pytest.mark.parametrize(
    ("variable", "value", "word"),
    [
        ("CODEXD_CODEX__ARGS", "--skip-git-repo-check", "CODEXD_CODEX__ARGS is not valid JSON"),
        ("CODEXD_NOTIFY__URLS", "json://localhost:1/x", "CODEXD_NOTIFY__URLS is not valid JSON"),
        ("CODEXD_HEALTH__INTERVAL", "inf", "health.interval: must be a finite number"),
        ("CODEXD_HEALTH__STALL_TIMEOUT", "inf", "health.stall_timeout: must be a finite number"),
        ("CODEXD_HEALTH__INTERVAL", "1e300", "health.interval: must be at most"),
        ("CODEXD_CODEX__ARGS", "[" * 100_000, "CODEXD_CODEX__ARGS is not valid JSON"),
        ("CODEXD_CODEX__ARGS", "[" * 200 + "]" * 200, "CODEXD_CODEX__ARGS is not valid JSON"),
    ],
)
def test_settings_that_cannot_work_are_refused_in_one_line(env, command, variable, value, word):
    env.set(**{variable: value})
    done = env.codexd(*command)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    if command == ["doctor"]:
        assert done.returncode == 1 and f"FAIL  settings: {word}" in done.stdout, done.stdout
        return
    lines = refused(done, word)
    assert len(lines) == 1, lines


def test_doctor_has_the_installed_codex_judge_codex_args(env):
    env.set(CODEXD_CODEX__COMMAND=json.dumps([real_codex()]), CODEX_HOME=str(env.root / "codex-home"))
    (env.root / "codex-home").mkdir()
    env.set(CODEXD_CODEX__ARGS=json.dumps(["--skip-git-repo-check", "-s", "read-only"]))
    good = env.codexd("doctor")
    assert "ok    codex.args: --skip-git-repo-check -s read-only: accepted by Codex" in good.stdout, (
        good.stdout
    )
    env.set(CODEXD_CODEX__ARGS=json.dumps(["-s", "read-only", "--no-such-flag"]))
    bad = env.codexd("doctor")
    assert bad.returncode == 1
    line = next(line for line in bad.stdout.splitlines() if "codex.args" in line)
    assert line.startswith("FAIL") and "error: unexpected argument '--no-such-flag' found" in line, line
    assert "fix codex.args" in line


@pytest.mark.parametrize(
    ("bad", "word"),
    [
        ("[health]\ninterval = inf\n", "health.interval: must be a finite number"),
        ("[health]\ninterval = 1e300\n", "health.interval: must be at most"),
        ("[health]\nstall_timeout = nan\n", "health.stall_timeout: must be a finite number"),
        ('[codex]\nargs = ["--ephemeral"]\n', "--ephemeral cannot be used"),
        ("max_parallel = [\n", "not valid TOML"),
    ],
)
def test_sighup_with_bad_settings_keeps_the_old_ones_and_the_daemon_supervising(env, daemon, bad, word):
    config = env.root / "config.toml"
    config.write_text('[codex]\ncommand = ["/nonexistent/first"]\n')
    d = daemon()
    config.write_text(bad)
    d.signal(signal.SIGHUP)
    wait_for(lambda: "settings.reload_failed" in d.output(), 10, "the refused reload")
    assert word in d.output()
    time.sleep(0.3)  # a daemon that dies of it would be gone by now
    assert d.proc.poll() is None, d.output()
    (env.spool / "after.md").write_text("Do it.\n")  # the config file is broken for the CLI too
    wait_for(lambda: _ended(env), 10, "the task")  # results.json comes first, then the final state
    assert "/nonexistent/first not found" in env.status("after")["error"]  # the old settings, in use
    assert d.stop() == 0


def _ended(env) -> bool:
    try:
        return env.status("after")["status"] == "failed"
    except (FileNotFoundError, ValueError):
        return False


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "0", "-5", "true", '"900"'])
def test_a_task_stall_timeout_must_be_finite_seconds(env, daemon, value):
    text = f"+++\nstall_timeout = {value}\n+++\nDo it.\n"
    refused(env.codexd("start", "--instructions", "-", input=text.encode()), "stall_timeout")
    env.spool.mkdir(mode=0o700)
    (env.spool / "dropped.md").write_text(text)
    daemon()
    note = env.spool / "rejected" / "dropped.md.error"
    wait_for(note.exists, 10, "the refusal")
    assert "stall_timeout must be a number of seconds" in note.read_text()
    listed = env.codexd("list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["-c", "notakeyvalue"], "Error parsing -c overrides: Invalid override (missing '='): notakeyvalue"),
        (["--enable", "no_such_feature"], "Error: Unknown feature flag: no_such_feature"),
    ],
)
def test_doctor_has_codex_read_its_settings_with_the_args_without_a_model(env, args, said):
    home = env.root / "codex-home"
    home.mkdir()
    env.set(CODEXD_CODEX__COMMAND=json.dumps([real_codex()]), CODEX_HOME=str(home))
    env.set(CODEXD_CODEX__ARGS=json.dumps(args))
    done = env.codexd("doctor")
    line = next(line for line in done.stdout.splitlines() if "codex.args" in line)
    assert line.startswith("FAIL") and said in line and "fix codex.args" in line, line
    env.set(CODEXD_CODEX__ARGS=json.dumps(["-c", 'model="gpt-5.1-codex"']))
    good = env.codexd("doctor")
    assert "ok    codex.args: -c model=" in good.stdout, good.stdout
    assert not (home / "sessions").exists()  # --ephemeral: the probe keeps no session


def test_the_largest_allowed_durations_work(env, daemon):
    year = str(365 * 86400)
    for name in ("HEALTH__INTERVAL", "HEALTH__STALL_TIMEOUT", "HEALTH__BACKOFF_MAX", "NOTIFY__EXPIRE"):
        env.set(**{f"CODEXD_{name}": year})
    env.set(CODEXD_MAX_PARALLEL="256", CODEXD_HEALTH__MAX_RESTARTS="1000", CODEXD_DAEMON__STOP_TIMEOUT=year)
    assert env.codexd("config", "check").returncode == 0
    d = daemon()
    d.signal(signal.SIGHUP)
    wait_for(lambda: "settings.reloaded" in d.output(), 10, "the reload")
    assert env.codexd("health").returncode in (0, 1)
    assert d.stop() == 0, d.output()


@pytest.mark.parametrize(("where", "value"), [("file", "5"), ("file", '""'), ("env", ""), ("env", " ")])
@pytest.mark.parametrize(
    "command", [["config", "check"], ["list"], ["list", "--json"], ["status", "x", "--json"]]
)
def test_a_tasks_dir_that_is_not_a_folder_path_is_refused_everywhere(env, where, value, command):
    """An empty tasks_dir meant the current folder to the daemon and the default one to `list`."""
    if where == "file":
        env.vars.pop("CODEXD_TASKS_DIR")
        (env.root / "config.toml").write_text(f"tasks_dir = {value}\n")
    else:
        env.set(CODEXD_TASKS_DIR=value)
    lines = refused(env.codexd(*command), "tasks_dir: must be a folder path")
    assert len(lines) == 1, lines
