"""`codex.args` merged with what codexd passes; settings that cannot work refused; Codex's own
error line taken as a failed run's reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from codexd.codex import cmdline, outcome, process
from codexd.config import settings
from codexd.errors import ConfigError
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(30)

# What Codex 0.169 prints on stderr for a flag given twice, and for an unknown one.
TWICE = [
    "error: the argument '--skip-git-repo-check' cannot be used multiple times",
    "",
    "Usage: codex exec [OPTIONS] [PROMPT]",
    "       codex exec [OPTIONS] <COMMAND> [ARGS]",
    "",
    "For more information, try '--help'.",
]
UNKNOWN = [
    "error: unexpected argument '--bogus-flag' found",
    "",
    "  tip: to pass '--bogus-flag' as a value, use '-- --bogus-flag'",
    "",
    *TWICE[2:],
]
FEATURE = [
    'WARNING: proceeding, even though we could not create PATH aliases: Refusing to create helper binaries"',
    "Error: Unknown feature flag: bogusfeature",
    "Stack backtrace:",
    "   0: <unknown>",
    "   1: <unknown>",
]


def argv(args: list[str], login_shell: bool = False, resume: str | None = None) -> list[str]:
    return process.exec_argv(
        ["codex"],
        args,
        task_dir=Path("/t/x"),
        cwd=Path("/w"),
        login_shell=login_shell,
        output_schema=None,
        resume=resume,
    )


@pytest.mark.parametrize(
    "given",
    [
        ["--skip-git-repo-check"],
        ["--json", "--skip-git-repo-check", "-s", "danger-full-access"],
        ["-c", "allow_login_shell=false"],
        ["--config=allow_login_shell=false"],
    ],
)
def test_a_flag_codexd_passes_too_is_passed_once(given):
    built = argv(given)
    for flag in (
        "--json",
        "--skip-git-repo-check",
        "allow_login_shell=false",
        "--config=allow_login_shell=false",
    ):
        assert sum(flag in word for word in built) <= 1, built
    assert cmdline.problems(given, login_shell=False) == []


def test_user_args_come_first_so_an_image_list_cannot_swallow_the_prompt_or_resume():
    built = argv(["-i", "a.png", "b.png"], resume="thread")
    assert built[:7] == ["codex", "exec", "-c", "features.goals=false", "-i", "a.png", "b.png"]
    assert built[7] == "--json" and built[-3:] == ["resume", "thread", "-"]  # the prompt on stdin


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (["-C", "/elsewhere"], "-C"),
        (["--cd=/elsewhere"], "--cd"),
        (["-o", "answer.txt"], "-o"),
        (["--output-last-message", "answer.txt"], "--output-last-message"),
        (["--output-schema", "s.json"], "--output-schema"),
        (["--ephemeral"], "--ephemeral"),
        (["resume", "--last"], "'resume'"),
        (["-"], "'-'"),
        (["review the code"], "'review the code'"),
        (["-s", "read-only", "do it"], "'do it'"),
        (["--"], "--"),
        (["--help"], "--help"),
        (["-m"], "-m needs a value"),
        (["-m", "--oss"], "-m needs a value"),
        (["-c", "allow_login_shell=true"], "codex.login_shell = true"),
        (["--worktree"], "codexd start --worktree"),
    ],
)
def test_a_conflicting_argument_is_refused_naming_it_and_the_fix(given, named):
    found = cmdline.problems(given, login_shell=False)
    assert len(found) == 1 and named in found[0] and ": " in found[0], found
    with pytest.raises(ValidationError, match=re.escape(named)):
        settings.CodexSettings(args=given)


def test_an_option_unknown_to_the_table_keeps_its_value_for_codex_to_judge():
    assert cmdline.problems(["--some-new-option", "value", "-s", "read-only"], login_shell=False) == []
    assert argv(["--some-new-option", "value"])[4:6] == ["--some-new-option", "value"]


def test_config_problems_are_one_line_each(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text('[codex]\nargs = ["-C", "/x", "--ephemeral", "--skip-git-repo-check"]\n')
    with pytest.raises(ConfigError) as caught:
        settings.load(config)
    assert len(caught.value.problems) == 2
    assert all(p.startswith("codex.args: ") for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("CODEXD_CODEX__ARGS", "--skip-git-repo-check", ["CODEXD_CODEX__ARGS", "JSON", '["..."]']),
        ("CODEXD_NOTIFY__URLS", "slack://a/b/c", ["CODEXD_NOTIFY__URLS", "JSON"]),
        ("CODEXD_HEALTH", "{", ["CODEXD_HEALTH", "table"]),
        ("CODEXD_HEALTH__INTERVAL", "inf", ["health.interval", "finite"]),
        ("CODEXD_HEALTH__STALL_TIMEOUT", "nan", ["health.stall_timeout", "finite"]),
        ("CODEXD_HEALTH__STALL_TIMEOUT", "1e300", ["health.stall_timeout", "at most"]),
        ("CODEXD_NOTIFY__EXPIRE", "Infinity", ["notify.expire", "finite"]),
        ("CODEXD_DAEMON__STOP_TIMEOUT", "1e12", ["daemon.stop_timeout", "at most"]),
        ("CODEXD_MAX_PARALLEL", "100000", ["max_parallel"]),
        ("CODEXD_HEALTH__MAX_RESTARTS", "100000000", ["health.max_restarts"]),
    ],
)
def test_settings_that_cannot_work_are_refused_in_one_line(tmp_path, monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)
    (tmp_path / "c.toml").write_text("")
    with pytest.raises(ConfigError) as caught:
        settings.load(tmp_path / "c.toml")
    assert len(caught.value.problems) == 1, caught.value.problems
    for word in words:
        assert word in caught.value.problems[0]


def test_valid_json_lists_by_environment_still_work(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEXD_CODEX__ARGS", json.dumps(["--skip-git-repo-check", "-s", "read-only"]))
    (tmp_path / "c.toml").write_text("")
    loaded, _ = settings.load(tmp_path / "c.toml")
    assert loaded.codex.args == ["--skip-git-repo-check", "-s", "read-only"]


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (TWICE, "error: the argument '--skip-git-repo-check' cannot be used multiple times"),
        (UNKNOWN, "error: unexpected argument '--bogus-flag' found"),
        (FEATURE, "Error: Unknown feature flag: bogusfeature"),
        (["Error parsing -c overrides: Invalid override (missing '='): x"], "Invalid override"),
        (["something odd", "and then this"], "something odd | and then this"),
    ],
)
def test_the_reason_is_codexs_error_line_not_its_usage_text(tail, reason):
    state, error = outcome.decide(2, outcome.RunSummary(), tail)
    assert state == TaskState.FAILED and error is not None
    assert reason in error and "Usage" not in error and "backtrace" not in error, error


def test_backoff_after_many_failures_in_a_row_stays_at_its_cap():
    from codexd.daemon import rules

    # a notify URL down for 11 days at the default 900 s cap fails about 1,100 times in a row
    assert rules.backoff(5000, 10.0, 900.0) == 900.0
    assert rules.backoff(1, 10.0, 900.0) == 10.0 and rules.backoff(3, 10.0, 900.0) == 40.0


def test_a_status_with_an_infinite_stall_timeout_from_an_older_codexd_is_written_back_valid():
    from codexd.tasks import store
    from codexd.tasks.records import TaskStatus

    data = {
        "task_id": "t1",
        "type": "generic",
        "status": "queued",
        "created_at": "2025-10-31T11:50:00Z",
        "stall_timeout": float("inf"),
    }
    status = TaskStatus.from_dict(data)
    assert status.stall_timeout is None
    json.loads(store.dump_json(status.to_dict()), parse_constant=pytest.fail)
    assert TaskStatus.from_dict({**data, "stall_timeout": 1800}).stall_timeout == 1800.0


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1.0, 1e300])
def test_the_python_api_refuses_a_timeout_that_would_wait_for_ever(tmp_path, timeout):
    from codexd import CodexTaskMonitor
    from codexd.errors import InvalidInput
    from tests.unit.test_api import make_task

    make_task(tmp_path, "t2", TaskState.IN_PROGRESS)
    with pytest.raises(InvalidInput, match="not seconds from 0"):
        CodexTaskMonitor("t2", tasks_dir=tmp_path).wait_for_completion(timeout=timeout)
