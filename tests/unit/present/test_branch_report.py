"""The report's Branch section and `status`'s branch line for a task run in a git worktree."""

from __future__ import annotations

import json
from pathlib import Path

from codexd.present import reports, views
from codexd.tasks import worktree
from tests.gitrepos import commit, make_repo


def record(tree: worktree.Worktree | None) -> dict[str, object]:
    found: dict[str, object] = {
        "task_id": "t1",
        "type": "generic",
        "status": "completed",
        "created_at": "2026-11-26T10:00:00Z",
        "log_file": "/x/progress.log",
    }
    return found if tree is None else {**found, "worktree": tree.to_dict()}


def made(tmp_path: Path) -> worktree.Worktree:
    return worktree.create("t1", make_repo(tmp_path / "repo"), tmp_path / "t1", None)


def test_the_report_shows_the_branch_its_base_its_commits_and_the_diff_stat(tmp_path):
    tree = made(tmp_path)
    commit(Path(tree.path), "<b>.txt", "1\n2\n")
    report = reports.build(record(tree), None, tmp_path / "t1")
    work = report["worktree"]
    assert work["branch"] == "codexd/t1" and work["base"] == tree.base and work["path"] == tree.path
    assert [c.split(" ", 1)[1] for c in work["commits"]] == ["add <b>.txt"]
    assert work["diff_stat"][-1] == "1 file changed, 2 insertions(+)"
    text = reports.render(report, "markdown")
    assert "## Branch" in text
    assert f"`codexd/t1 from {tree.base[:12]} (worktree {tree.path})`" in text
    assert f"- `{work['commits'][0]}`" in text and "1 file changed, 2 insertions(+)" in text
    page = reports.render(report, "html")
    assert "<h2>Branch</h2>" in page and "add &lt;b&gt;.txt" in page and "<b>.txt" not in page
    assert json.loads(reports.render(report, "json"))["worktree"]["commits"] == work["commits"]


def test_a_branch_without_commits_and_with_loose_changes_says_so(tmp_path):
    tree = made(tmp_path)
    (Path(tree.path) / "loose.txt").write_text("x\n")
    text = reports.render(reports.build(record(tree), None, tmp_path / "t1"), "markdown")
    assert "- no commits yet" in text
    assert "- 1 file(s) changed in the worktree and not committed" in text


def test_a_task_without_a_worktree_has_no_branch_section(tmp_path):
    report = reports.build(record(None), None, tmp_path)
    assert report["worktree"] is None
    assert "Branch" not in reports.render(report, "markdown") + reports.render(report, "html")


def test_status_shows_the_branch_in_one_line(tmp_path):
    tree = worktree.Worktree("/w/t1/worktree", "codexd/t1", "0123456789abcdef0123", "/repo")
    shown = views.task_details(record(tree)).splitlines()
    assert "  branch    codexd/t1 from 0123456789ab   worktree /w/t1/worktree" in shown
    assert not any("branch" in line for line in views.task_details(record(None)).splitlines())
