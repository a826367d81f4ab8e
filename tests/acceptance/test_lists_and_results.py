"""What `list`, `status`, `report` and the notices say about tasks: waiting in the spool,
results that do not fit their type's schema, the tasks folder read."""

from __future__ import annotations

import json

from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState

# every field the daemon writes
SCHEMA_KEYS = set(TaskStatus("t", "generic", TaskState.QUEUED, "x", "x", "x").to_dict())


def test_a_task_waiting_in_the_spool_is_listed_queued_with_every_field(env):
    env.write("review.md", '+++\ntype = "pr_review"\n+++\nReview the PRs.\n')
    assert env.codexd("start", "--instructions", "review.md", "--task-id", "waiting").returncode == 0
    env.spool.joinpath("dropped.md").write_text("Dropped by hand.\n")

    listed = env.codexd("list", "--json")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert {r["task_id"]: r["status"] for r in records} == {"waiting": "queued", "dropped": "queued"}
    assert all(set(r) == SCHEMA_KEYS for r in records)

    table = env.codexd("list")
    assert "waiting" in table.stdout and "dropped" in table.stdout and "queued" in table.stdout

    shown = env.codexd("status", "waiting", "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert set(record) == SCHEMA_KEYS
    assert record["exit_code"] is None and record["pid"] is None and record["type"] == "pr_review"
    assert record["progress"]["items"] == [] and record["progress"]["completed"] == 0
    assert record == next(r for r in records if r["task_id"] == "waiting")  # one record, one place
    assert json.loads(env.codexd("status", "dropped", "--json").stdout)["status"] == "queued"
