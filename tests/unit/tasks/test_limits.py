"""A task's limits, `timeout` and `max_tokens`: checked in front matter, kept in `taken`."""

from __future__ import annotations

import pytest

from codexd.config import settings
from codexd.errors import InvalidInput
from codexd.fields import Fields
from codexd.tasks import frontmatter
from codexd.tasks.taken import Taken

pytestmark = pytest.mark.timeout(30)


def test_timeout_and_max_tokens_are_taken_and_kept():
    parsed = frontmatter.parse(b"+++\ntimeout = 60\nmax_tokens = 2500\n+++\nDo it.\n")
    taken = Taken.of(parsed.fields, parsed.body_offset)
    assert (taken.timeout, taken.max_tokens) == (60.0, 2500)
    assert Taken.read(Fields(taken.to_dict())) == taken
    assert Taken.of({}, 0).timeout is None and Taken.of({}, 0).max_tokens is None


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("timeout = 0", "front matter timeout must be a number of seconds greater than 0"),
        ("timeout = -1", "front matter timeout"),
        ("timeout = inf", "front matter timeout"),
        ("timeout = 31536001", "(a year)"),
        ('timeout = "1h"', "front matter timeout"),
        ("max_tokens = 0", "front matter max_tokens must be a whole number of tokens, 1 or more"),
        ("max_tokens = 2.5", "front matter max_tokens"),
        ("max_tokens = true", "front matter max_tokens"),
        ('max_tokens = "many"', "front matter max_tokens"),
    ],
)
def test_bad_limits_are_refused_saying_which(line, words):
    with pytest.raises(InvalidInput) as caught:
        frontmatter.parse(f"+++\n{line}\n+++\nDo it.\n".encode())
    assert words in str(caught.value)


def test_a_hand_made_bad_limit_in_status_json_reads_as_none():
    f = Fields({"body_offset": 0, "timeout": -3, "max_tokens": "x"})
    taken = Taken.read(f)
    assert taken is not None and taken.timeout is None and taken.max_tokens is None


def test_the_settings_defaults_are_no_limit_and_bad_ones_are_refused():
    health = settings.HealthSettings()
    assert health.timeout is None and health.max_tokens is None
    assert settings.HealthSettings(timeout=60, max_tokens=10).max_tokens == 10
    for bad in ({"timeout": 0}, {"max_tokens": 0}, {"timeout": float("inf")}):
        with pytest.raises(ValueError, match=r"greater than|finite"):
            settings.HealthSettings(**bad)
