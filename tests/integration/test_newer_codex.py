"""What newer Codex CLIs offer the model (goals, request_user_input, subagents), seen through codexd."""

from __future__ import annotations

import json
import time

import pytest

from tests.fake_model import Say, Tool
from tests.integration.test_codex_tasks import finished, log_text, submit

pytestmark = [pytest.mark.codex, pytest.mark.both_codex, pytest.mark.timeout(90)]

AGENTS = "multi_agent_v1"  # the namespace Codex offers the subagent tools in
QUESTION = {
    "questions": [
        {
            "id": "branch",
            "header": "Branch",
            "question": "Which branch should I merge into?",
            "options": [
                {"label": "main (Recommended)", "description": "the default branch"},
                {"label": "dev", "description": "the integration branch"},
            ],
        }
    ]
}
SCENARIOS = {
    "goal": [Tool("create_goal", json.dumps({"objective": "Make the tests pass"})), Say("goal set")],
    "ask": [Tool("request_user_input", json.dumps(QUESTION)), Say("Went on with main.")],
    "delegate": [
        Tool("spawn_agent", json.dumps({"message": "SCENARIO: helper\nCount the files."}), AGENTS),
        Tool("wait_agent", json.dumps({"targets": ["$AGENT_ID"], "timeout_ms": 20000}), AGENTS),
        Tool("close_agent", json.dumps({"target": "$AGENT_ID"}), AGENTS),
        Say("The helper counted 3 files."),
    ],
    "helper": [Say("3 files")],
}


def tool_names(body: dict) -> set[str]:
    names = set()
    for tool in body.get("tools", []):
        names |= {tool.get("name")} | {inner.get("name") for inner in tool.get("tools", [])}
    return names


def test_goals_are_off_unless_codex_args_turn_them_on(env, model_world, daemon):
    """Goals show nothing in exec's events, so codexd turns them off; `--enable goals` wins."""
    model = model_world(SCENARIOS)
    first = daemon()
    plain = submit(env, "goal", "--task-id", "plain")
    assert finished(env, plain)["status"] == "completed"
    offered = tool_names(model.requests[0])
    assert "create_goal" not in offered and "exec_command" in offered
    assert first.stop() == 0
    env.set(CODEXD_CODEX__ARGS=json.dumps(["-s", "danger-full-access", "--enable", "goals"]))
    daemon()
    opted = submit(env, "goal", "--task-id", "opted")
    status = finished(env, opted)
    assert status["status"] == "completed", status["error"]
    assert "create_goal" in tool_names(model.requests[-1])
    assert '"status\\":\\"active\\"' in json.dumps(model.requests[-1]["input"])  # Codex kept the goal


def test_a_question_for_the_user_is_declined_by_codex_and_the_task_goes_on(env, model_world, daemon):
    """In exec mode Codex answers request_user_input itself, at once: nothing waits for a user."""
    model = model_world(SCENARIOS)
    env.set(CODEXD_HEALTH__STALL_TIMEOUT="20")
    daemon()
    began = time.monotonic()
    task_id = submit(env, "ask")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    assert time.monotonic() - began < 15 and status["stalls"] == 0
    answer = model.requests[-1]["input"][-1]
    assert answer["type"] == "function_call_output" and "unavailable" in answer["output"]
    log = log_text(env, task_id)
    assert "Agent: Went on with main." in log
    assert "The agent asked for input, which codex exec cannot give" in log  # said on stderr only


def test_subagents_show_in_the_log(env, model_world, daemon):
    model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "delegate")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    log = log_text(env, task_id)
    assert "Subagent spawn_agent: SCENARIO: helper Count the files." in log
    assert "Subagent wait completed: " in log and "completed (3 files)" in log
    assert "Subagent close_agent completed" in log
    assert "Agent: The helper counted 3 files." in log
