"""Reports and aggregates of tasks the real Codex CLI ran against the fake model."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_codex_tasks import SCENARIOS, finished, submit

pytestmark = [pytest.mark.codex, pytest.mark.timeout(90)]


@pytest.fixture
def two_tasks(env, model_world, daemon):
    model_world(SCENARIOS)
    env.set(CODEXD_HEALTH__MAX_RETRIES="0")
    daemon()
    review = submit(env, "pr", "--type", "pr_review", "--task-id", "review")
    broken = submit(env, "broken", "--task-id", "broken")
    finished(env, review)
    finished(env, broken)
    (env.tasks / "review" / "artifacts" / "pr-reviews").mkdir(parents=True)
    (env.tasks / "review" / "artifacts" / "pr-reviews" / "602.md").write_text("# 602\nBreaks the build.\n")
    return review, broken


def test_a_report_in_markdown_json_and_html(env, two_tasks):
    md = env.codexd("report", "review")
    assert md.returncode == 0, md.stderr
    text = md.stdout
    assert text.startswith("# ✅ review: completed\n")
    assert "| Type | pr_review |" in text and "| Duration | " in text
    assert "**Results:** 3 items: ✅ approved 1 · ⚠️ changes requested 1 · 💬 commented 1" in text
    assert "- ⚠️ #602 - crossterm upgrade (changes requested)" in text
    assert "## Summary\n\n```text\nReviewed 3 PRs\n```" in text
    assert "- `artifacts/pr-reviews/602.md` (24 B)" in text
    data = json.loads(env.codexd("report", "review", "--format", "json").stdout)
    assert data["counts"] == {"approved": 1, "changes_requested": 1, "commented": 1}
    assert data["results"]["prs"][1]["verdict"] == "changes_requested"
    out = env.root / "report.html"
    page = env.codexd("report", "broken", "--format", "html", "-o", str(out))
    assert page.returncode == 0 and page.stdout == "" and f"wrote {out}" in page.stderr
    html = out.read_text()
    assert html.startswith("<!doctype html>") and "<h1>❌ broken: failed</h1>" in html
    assert "Error: Codex turn failed" in html and "href=" not in html and "src=" not in html


def test_an_aggregate_totals_then_one_section_per_task(env, two_tasks):
    done = env.codexd("aggregate", "--tasks", "review,broken")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("# Codex tasks: 2\n")
    assert "| ✅ completed | 1 |" in text and "| ❌ failed | 1 |" in text
    assert "| ✅ approved | 1 |" in text and "| ⚠️ changes requested | 1 |" in text
    assert "## ✅ review: completed" in text and "## ❌ broken: failed" in text
    every = json.loads(env.codexd("aggregate", "--all", "--format", "json").stdout)
    assert every["tasks"] == 2 and every["by_status"] == {"completed": 1, "failed": 1}
    later = json.loads(env.codexd("aggregate", "--all", "--since", "2999-01-01", "--format", "json").stdout)
    assert later["tasks"] == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["aggregate", "--tasks", "review,ghost,nope"], "no task 'ghost', 'nope'"),
        (["aggregate"], "either --tasks ID,ID,... or --all"),
        (["aggregate", "--all", "--tasks", "review"], "either --tasks ID,ID,... or --all"),
        (["aggregate", "--all", "--since", "last week"], "--since 'last week' is not a date"),
        (["report", "review", "-o", "/dev/null/dir/r.md"], "/dev/null/dir/r.md: Not a directory"),
        (["report", "ghost"], "no task 'ghost'"),
        (["report", "review", "--format", "pdf"], "'pdf' is not one of"),
    ],
)
def test_bad_report_requests_get_one_line_and_exit_2(env, two_tasks, args, words):
    done = env.codexd(*args)
    assert done.returncode == 2 and words in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
