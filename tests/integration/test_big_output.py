"""The real Codex CLI running a command whose output is over 1 MiB: its event line is taken."""

from __future__ import annotations

import json

import pytest

from tests.fake_model import Call, Say
from tests.integration.test_codex_tasks import finished, submit

pytestmark = [pytest.mark.codex, pytest.mark.timeout(90)]

BIG = "yes x | head -c 1200000"


def test_a_command_printing_over_a_mebibyte_completes_with_its_progress(env, model_world, daemon):
    model_world({"big": [Call(BIG), Say("Printed it.")]})
    daemon()
    task_id = submit(env, "big")
    status = finished(env, task_id)
    assert status["status"] == "completed" and status["stalls"] == 0, status
    events = env.tasks / task_id / "events.jsonl"
    longest = max(len(line) for line in events.read_bytes().splitlines())
    assert longest > 1 << 20  # Codex wrote the whole output on one event line
    assert status["daemon"]["events"] == events.stat().st_size  # and all of it was taken
    log = (env.tasks / task_id / "progress.log").read_text()
    assert f"Running: {BIG}" in log
    assert f"Finished (exit 0): {BIG}" in log
    assert "Agent: Printed it." in log
    assert json.loads((env.tasks / task_id / "results.json").read_text()) == {"summary": "Printed it."}
