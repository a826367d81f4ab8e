"""A task's limits (`timeout`, `max_tokens`) as a user meets them: flags, front matter, and the end."""

from __future__ import annotations

import json
import time

import pytest

from tests.acceptance.test_cli import one_line_error
from tests.conftest import wait_for
from tests.fault.test_trees_and_endpoints import tree_of

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(60)]


def test_start_takes_the_limits_into_the_front_matter(env):
    path = env.write("a.md", "Do it.\n")
    done = env.codexd("start", "--instructions", str(path), "--timeout", "90", "--max-tokens", "2500")
    assert done.returncode == 0, done.stderr
    text = (env.spool / "a.md").read_text()
    assert "timeout = 90.0" in text and "max_tokens = 2500" in text


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--timeout", "0"], ["front matter timeout must be a number of seconds greater than 0"]),
        (["--timeout", "soon"], ["--timeout", "'soon' is not a number of seconds"]),
        (["--max-tokens", "0"], ["front matter max_tokens must be a whole number"]),
        (["--max-tokens", "-5"], ["--max-tokens"]),
    ],
)
def test_start_refuses_bad_limits_in_one_line(env, args, words):
    path = env.write("a.md", "Do it.\n")
    one_line_error(env.codexd("start", "--instructions", str(path), *args), 2, *words)


SLEEPER = """#!/bin/bash
# A Codex that starts a turn, leaves a child sleeping, and never ends.
bash -c 'exec sleep 600' &
printf '{"type":"thread.started","thread_id":"slow-%s"}\\n{"type":"turn.started"}\\n' "$$"
wait
"""


def test_a_task_over_its_timeout_fails_within_seconds_and_its_tree_is_gone(env, daemon):
    script = env.write("sleeper", SLEEPER)
    script.chmod(0o755)
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(script)]), CODEXD_DAEMON__STOP_GRACE="1")
    daemon()
    path = env.write("slow.md", "+++\ntimeout = 1\nstall_timeout = 600\n+++\nDo it.\n")
    assert env.codexd("start", "--instructions", str(path)).returncode == 0
    wait_for(lambda: len(tree_of(env, "slow")) >= 2, 20, "the task's two processes")
    began = time.monotonic()
    final = wait_for(lambda: (s := env.status("slow"))["status"] == "failed" and s, 20, "the task to fail")
    assert time.monotonic() - began < 10
    assert final["error"].startswith("timeout 1s reached: ran ")
    assert final["taken"]["timeout"] == 1.0
    wait_for(lambda: not tree_of(env, "slow"), 10, "nothing left of its tree")
    assert "Stopping: timeout 1s reached" in (env.tasks / "slow" / "progress.log").read_text()


def test_a_spool_file_with_a_bad_limit_is_refused_with_its_error(env, daemon):
    env.spool.mkdir(mode=0o700)
    (env.spool / "over.md").write_text("+++\nmax_tokens = 0\n+++\nDo it.\n")
    daemon()
    note = env.spool / "rejected" / "over.md.error"
    wait_for(note.exists, 10, "the refusal")
    assert "front matter max_tokens must be a whole number of tokens, 1 or more" in note.read_text()


SPENDER = """#!/bin/bash
# A Codex whose session has used 3,450 tokens; a resumed run ends at once, a new one goes on.
printf '{"type":"thread.started","thread_id":"t-spender"}\\n{"type":"turn.started"}\\n'
USED='{"input_tokens":3000,"cached_input_tokens":0,"output_tokens":450}'
printf '{"type":"turn.completed","usage":%s}\\n' "$USED"
case " $* " in *" resume "*) exit 0 ;; esac
exec sleep 600
"""


def test_a_task_stopped_at_its_token_budget_is_retried_only_with_a_larger_one(env, daemon):
    script = env.write("spender", SPENDER)
    script.chmod(0o755)
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(script)]), CODEXD_DAEMON__STOP_GRACE="1")
    daemon()
    path = env.write("spend.md", "+++\nmax_tokens = 2500\nstall_timeout = 600\n+++\nDo it.\n")
    assert env.codexd("start", "--instructions", str(path)).returncode == 0
    final = wait_for(lambda: (s := env.status("spend"))["status"] == "failed" and s, 20, "the task to fail")
    assert final["error"] == "max_tokens 2500 reached: 3450 used"
    # the same budget would stop it at once: refused, saying what to do
    one_line_error(env.codexd("retry", "spend"), 2, "max_tokens 2500 reached", "--max-tokens N", "N > 3450")
    one_line_error(env.codexd("retry", "spend", "--max-tokens", "3000"), 2, "used 3450 tokens already")
    done = env.codexd("retry", "spend", "--max-tokens", "10000")
    assert done.returncode == 0, done.stderr
    final = wait_for(lambda: (s := env.status("spend"))["status"] == "completed" and s, 20, "the retry")
    assert final["taken"]["max_tokens"] == 10000
    assert final["usage"]["total_tokens"] == 3450  # the resumed session, not counted twice
    assert "its token budget is now max_tokens 10000" in (env.tasks / "spend" / "progress.log").read_text()
