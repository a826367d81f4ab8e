"""The price table: each bad entry refused in one line naming it; the environment may set it as JSON."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(60)


def test_bad_prices_are_refused_one_line_each(env):
    config = env.write(
        "bad.toml",
        '[prices."gpt-5.1-codex"]\ninput = -1\ncached_input = 0.125\noutput = 10.0\ncolour = 1\n'
        "[prices.half]\ninput = 1.0\n",
    )
    done = env.codexd("--config", str(config), "config", "check")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 4, lines
    assert any("prices.gpt-5.1-codex.input: Input should be greater than or equal to 0" in x for x in lines)
    assert any("prices.gpt-5.1-codex.colour: unknown setting" in x for x in lines)
    assert any("prices.half.cached_input: Field required" in x for x in lines)
    assert any("prices.half.output: Field required" in x for x in lines)


def test_prices_from_the_environment(env):
    env.set(CODEXD_PRICES=json.dumps({"o3": {"input": 2, "cached_input": 0.5, "output": 8}}))
    shown = env.codexd("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["prices"] == {"o3": {"input": 2.0, "cached_input": 0.5, "output": 8.0}}
    env.set(CODEXD_PRICES__O3__OUTPUT="inf")
    refused = env.codexd("config", "check")
    assert refused.returncode == 2 and "prices.o3.output: must be a finite number" in refused.stderr
