"""A task's limits (`timeout`, `max_tokens`) as a user meets them: flags, front matter, and the end."""

from __future__ import annotations

import pytest

from tests.acceptance.test_cli import one_line_error

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
