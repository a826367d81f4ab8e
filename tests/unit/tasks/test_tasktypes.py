"""Results held to their type's schema, and one list of items from reports and the final JSON."""

from __future__ import annotations

import json

import pytest

from codexd.present import views
from codexd.tasks import tasktypes
from codexd.tasks.records import Item, Progress, ProgressSource

PR = tasktypes.BUILTIN["pr_review"]
REPORTED = ProgressSource.REPORTS


def answer(*prs: tuple[int, str, str]) -> str:
    entries = [{"number": n, "title": t, "verdict": v, "summary": "-"} for n, t, v in prs]
    return json.dumps({"summary": "done", "prs": entries})


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (None, "there was no final message"),
        ("All fine.", "the final message is not a JSON object"),
        ('{"prs": []}', "it lacks 'summary'"),
        ('{"summary": "x", "prs": {}}', "'prs' is not a list"),
    ],
)
def test_a_completed_run_whose_message_does_not_fit_says_why(message, why):
    results, _, _ = tasktypes.build_results(PR, message, Progress(), completed=True)
    assert results["parse_error"] == f"⚠️ results did not match the pr_review schema: {why}"


def test_a_fitting_message_a_cancelled_task_and_a_type_without_schema_have_no_parse_error():
    assert "parse_error" not in tasktypes.build_results(PR, answer(), Progress(), completed=True)[0]
    assert "parse_error" not in tasktypes.build_results(PR, None, Progress())[0]  # cancelled: no message
    assert "parse_error" not in tasktypes.build_results(PR, "half a thought", Progress())[0]
    generic = tasktypes.BUILTIN["generic"]
    assert tasktypes.build_results(generic, "Done.", Progress(), completed=True)[0] == {"summary": "Done."}


def test_final_verdicts_replace_reported_outcomes_and_counts_come_from_the_items():
    reported = Progress(
        total=4,
        completed=2,
        items=(Item("#602 - crossterm", "commented"), Item("docs typo")),
        source=REPORTED,
    )
    message = answer((602, "crossterm upgrade", "changes_requested"), (626, "toml", "approved"))
    results, counts, progress = tasktypes.build_results(PR, message, reported, completed=True)
    assert progress.items == (
        Item("#602 - crossterm upgrade", "changes_requested"),
        Item("docs typo", "done"),
        Item("#626 - toml", "approved"),
    )
    assert (progress.total, progress.completed) == (4, 3)
    assert counts == {"approved": 1, "changes_requested": 1, "commented": 0, "done": 1}
    assert {k: results[k] for k in counts} == counts


def test_a_plans_steps_give_way_to_the_final_items_and_titles_match_without_a_number():
    plan = Progress(total=2, completed=2, items=(Item("look"), Item("write")), source=ProgressSource.PLAN)
    _, counts, progress = tasktypes.build_results(PR, answer((1, "a", "approved")), plan, completed=True)
    assert progress.items == (Item("#1 - a", "approved"),) and counts["approved"] == 1
    assert tasktypes.merged(
        Progress(items=(Item("Fix Docs "),), source=REPORTED), [Item("fix docs", "commented")]
    ).items == (Item("fix docs", "commented"),)
    kept = Progress(items=(Item("x"),), source=REPORTED)
    assert tasktypes.merged(kept, None) is kept


def test_list_names_each_flagged_task_under_the_table():
    flagged = {"task_id": "a", "status": "failed", "error": "⚠️ results did not match the pr_review schema: x"}
    plain = {"task_id": "b", "status": "failed", "error": "codex exited 1"}
    lines = views.task_table([flagged, plain]).splitlines()
    assert lines[-1] == "a: ⚠️ results did not match the pr_review schema: x" and len(lines) == 4
