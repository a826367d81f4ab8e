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
