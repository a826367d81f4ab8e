"""Token use with the real Codex CLI and a fake model that charges every answered request."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import psutil
import pytest

from tests.conftest import wait_for
from tests.fake_model import CHARGE, CHARGED_TOTAL, Call, Say, rate_limit_headers
from tests.fault.test_trees_and_endpoints import tree_of
from tests.integration.test_codex_tasks import _status, finished, log_text, submit
from tests.integration.test_recovery import SCENARIOS as RECOVERY
from tests.integration.test_recovery import quick_stalls  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.codex, pytest.mark.both_codex, pytest.mark.timeout(120)]

SCENARIOS = {
    "silent_once": RECOVERY["silent_once"],
    "slow_step": [Call("echo first"), Call("sleep 4", yield_ms=60_000), Say("done")],
    "long_step": [Call("echo first"), Call("sleep 120", yield_ms=300_000), Say("done")],
}


@pytest.mark.usefixtures("quick_stalls")
def test_usage_across_a_stall_and_resume_is_what_the_model_charged_not_double(env, model_world, daemon):
    model = model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "silent_once")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    assert status["restarts"] == 1 and len(model.requests) == 3  # one request hung: not charged
    answered = 2
    assert status["usage"] == {
        "input_tokens": answered * CHARGE["input_tokens"],
        "cached_input_tokens": answered * CHARGE["cached_tokens"],
        "output_tokens": answered * CHARGE["output_tokens"],
        "reasoning_output_tokens": answered * CHARGE["reasoning_tokens"],
        "total_tokens": answered * CHARGED_TOTAL,
    }
    # the report: one answered request in each run; the resumed run does not count the first again
    runs = run_shares(env, task_id)
    assert [(r["how"], r["session"], r["usage"]["total_tokens"]) for r in runs] == [
        ("first start", status["thread_id"], CHARGED_TOTAL),
        ("resumed", status["thread_id"], CHARGED_TOTAL),
    ]
    markdown = env.codexd("report", task_id).stdout
    assert "## Runs" in markdown and f"| Total | {answered * CHARGED_TOTAL:,} (input" in markdown


def run_shares(env, task_id: str) -> list[dict]:
    done = env.codexd("report", task_id, "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sum(r["usage"]["total_tokens"] for r in report["runs"]) == report["usage"]["total_tokens"]
    return report["runs"]


def mid_turn_usage(env, task_id: str) -> bool:
    """The task runs, its turn has not ended, and its usage is known (from the rollout)."""
    status = _status(env, task_id) or {}
    events = env.tasks / task_id / "events.jsonl"
    ended = not events.exists() or b'"turn.completed"' in events.read_bytes()
    return status.get("status") == "in_progress" and bool(status.get("usage")) and not ended


def test_usage_is_known_before_the_turn_ends(env, model_world, daemon):
    model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "slow_step")
    # Codex 0.169/0.171 write a request's token_count once its tool calls have run: the first
    # request's figure is there while the second request's command still runs.
    wait_for(lambda: mid_turn_usage(env, task_id), 30, "usage while the turn goes on")
    assert (_status(env, task_id) or {})["usage"]["total_tokens"] == CHARGED_TOTAL
    status = finished(env, task_id)
    assert status["usage"]["total_tokens"] == 3 * CHARGED_TOTAL


def test_a_fresh_retry_adds_a_new_session_to_what_the_stopped_one_used(env, model_world, daemon):
    model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "slow_step")
    wait_for(lambda: mid_turn_usage(env, task_id), 30, "usage while the turn goes on")
    assert env.codexd("stop", task_id).returncode == 0
    stopped = _status(env, task_id)
    assert stopped is not None and stopped["status"] == "cancelled"
    before = stopped["usage"]["total_tokens"]
    assert before >= CHARGED_TOTAL
    retried = env.codexd("retry", task_id, "--fresh")
    assert retried.returncode == 0, retried.stderr
    wait_for(lambda: (_status(env, task_id) or {}).get("status") == "in_progress", 30, "the fresh run")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    # the fresh session's three answered requests, added to the stopped session's figure
    assert status["usage"]["total_tokens"] == before + 3 * CHARGED_TOTAL
    runs = run_shares(env, task_id)
    assert [(r["how"], r["usage"]["total_tokens"]) for r in runs] == [
        ("first start", before),
        ("new session", 3 * CHARGED_TOTAL),
    ]
    assert runs[0]["session"] != runs[1]["session"] == status["thread_id"]


PRICES = '[prices."gpt-5.1-codex"]\ninput = 1.25\ncached_input = 0.125\noutput = 10.0\n'


def test_a_price_in_the_settings_gives_the_estimated_cost_of_a_real_run(env, model_world, daemon):
    model_world({"two_steps": [Call("echo first"), Say("done")]})
    (env.root / "config.toml").write_text(PRICES)
    daemon()
    task_id = submit(env, "two_steps")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    # two answered requests on the model the fake's Codex home names, priced per million tokens
    fresh, cached = CHARGE["input_tokens"] - CHARGE["cached_tokens"], CHARGE["cached_tokens"]
    usd = 2 * (fresh * 1.25 + cached * 0.125 + CHARGE["output_tokens"] * 10.0) / 1e6
    assert status["cost"] == {"usd": pytest.approx(usd), "model": "gpt-5.1-codex", "estimated": True}
    shown = env.codexd("status", task_id)
    assert f"≈ ${usd:.4f} (gpt-5.1-codex" in shown.stdout, shown.stdout
    report = env.codexd("report", task_id, "--format", "json")
    assert json.loads(report.stdout)["cost"]["usd"] == pytest.approx(usd)


def test_without_prices_a_real_run_has_no_cost(env, model_world, daemon):
    model_world({"two_steps": [Call("echo first"), Say("done")]})
    daemon()
    status = finished(env, submit(env, "two_steps"))
    assert status["usage"]["total_tokens"] == 2 * CHARGED_TOTAL and "cost" not in status


def test_the_accounts_rate_limits_reach_health(env, model_world, daemon):
    model = model_world({"two_steps": [Call("echo first"), Say("done")]})
    resets = int(time.time()) + 3600
    model.headers = rate_limit_headers((42.5, 300, resets), (12.0, 10080, resets + 86400))
    daemon()
    before = json.loads(env.codexd("health", "--json").stdout)
    assert "rate_limits" not in before  # nothing seen yet: nothing shown
    status = finished(env, submit(env, "two_steps"))
    assert status["status"] == "completed", status["error"]
    found = json.loads(env.codexd("health", "--json").stdout)["rate_limits"]
    assert found["primary"]["used_percent"] == 42.5 and found["primary"]["window_minutes"] == 300
    assert found["secondary"]["used_percent"] == 12.0 and found["secondary"]["window_minutes"] == 10080
    assert found["primary"]["resets_at"] == datetime.fromtimestamp(resets, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    said = env.codexd("health").stdout
    assert "rate limits: 5h window 42% used, resets " in said and "; weekly 12% used, resets " in said, said


def test_an_api_key_gives_no_rate_limits_and_health_shows_none(env, model_world, daemon):
    model_world({"two_steps": [Call("echo first"), Say("done")]})
    daemon()
    assert finished(env, submit(env, "two_steps"))["status"] == "completed"
    assert "rate_limits" not in json.loads(env.codexd("health", "--json").stdout)
    assert "rate limits:" not in env.codexd("health").stdout


def ended_mid_turn(env, task_id: str, began: float) -> dict:
    """The task failed within seconds, its turn never ended, and nothing of its tree is left
    (the `sleep 120` its Codex ran included)."""
    status = finished(env, task_id)
    assert status["status"] == "failed", status
    assert time.monotonic() - began < 20
    assert b'"turn.completed"' not in (env.tasks / task_id / "events.jsonl").read_bytes()
    wait_for(lambda: not tree_of(env, task_id), 10, "nothing left of the task's tree")
    return status


def sleeping(env, task_id: str) -> bool:
    for proc in tree_of(env, task_id):
        try:
            if "sleep 120" in " ".join(proc.cmdline()):
                return True
        except psutil.Error:  # one that ended meanwhile
            continue
    return False


def long_step_under(env, model_world, daemon, *limit: str) -> tuple[str, float]:
    """A task whose second command sleeps 120 s, submitted under `limit`; and when."""
    model_world(SCENARIOS)
    env.set(CODEXD_DAEMON__STOP_GRACE="1")
    daemon()
    return submit(env, "long_step", *limit), time.monotonic()


def test_a_token_budget_stops_the_task_mid_turn_and_its_tree(env, model_world, daemon):
    task_id, began = long_step_under(env, model_world, daemon, "--max-tokens", "500")
    status = ended_mid_turn(env, task_id, began)
    used = status["usage"]["total_tokens"]
    assert used >= CHARGED_TOTAL
    assert status["error"] == f"max_tokens 500 reached: {used} used"
    assert f"max_tokens 500 reached: {used} used" in log_text(env, task_id)


def test_a_timeout_ends_the_task_and_its_tree(env, model_world, daemon):
    task_id, began = long_step_under(env, model_world, daemon, "--timeout", "3")
    wait_for(lambda: sleeping(env, task_id), 30, "its sleep")
    status = ended_mid_turn(env, task_id, began)
    assert status["error"].startswith("timeout 3s reached: ran "), status["error"]
