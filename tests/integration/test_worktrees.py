"""Worktree tasks with the real Codex CLI: two tasks in one repository at once, each committing
on its own branch, the user's checkout untouched; a stalled one resumed in the same worktree;
`rm` removing the worktrees and keeping the branches (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fake_model import Call, Hang, Once, Say
from tests.gitrepos import checkout, git, make_repo
from tests.integration.test_codex_tasks import finished

pytestmark = [pytest.mark.codex, pytest.mark.timeout(120)]

COMMIT = (
    'echo "work of $CODEXD_TASK_ID" > "$CODEXD_TASK_ID.txt" && sleep 2 && git add "$CODEXD_TASK_ID.txt" && '
    'git -c user.name=agent -c user.email=agent@example.com commit -q -m "work of $CODEXD_TASK_ID"'
)
SCENARIOS = {
    "commit": [Call(COMMIT), Say("Committed my work.")],
    "quiet": [Call("pwd > first-run.txt"), Once(Hang(), Call("pwd > resumed-run.txt")), Say("done")],
}


def submit_in(env, repo: Path, scenario: str, task_id: str) -> None:
    path = env.write(f"{task_id}.md", f"SCENARIO: {scenario}\nDo the work.\n")
    done = env.codexd(
        "start", "--instructions", str(path), "--worktree", "--cwd", str(repo), "--task-id", task_id
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{task_id}\n"


def test_two_worktree_tasks_in_one_repository_run_at_once_each_committing_on_its_own_branch(
    env, model_world, daemon
):
    repo = make_repo(env.root / "repo")
    (repo / "a.txt").write_text("the user's own edit, not committed\n")
    (repo / "notes.txt").write_text("untracked\n")
    before, head = checkout(repo), git("rev-parse", "HEAD", cwd=repo)
    model_world(SCENARIOS)
    env.set(CODEXD_MAX_PARALLEL="2")
    daemon()
    submit_in(env, repo, "commit", "left")
    submit_in(env, repo, "commit", "right")
    done = {task_id: finished(env, task_id, timeout=60) for task_id in ("left", "right")}
    for task_id, status in done.items():
        assert status["status"] == "completed", status["error"]
        tree = env.tasks / task_id / "worktree"
        assert status["worktree"] == {
            "path": str(tree),
            "branch": f"codexd/{task_id}",
            "base": head,
            "repo": str(repo),
        }
        assert git("log", "--format=%s", f"main..codexd/{task_id}", cwd=repo) == f"work of {task_id}"
        assert git("ls-tree", "--name-only", f"codexd/{task_id}", cwd=repo).splitlines() == [
            "a.txt",
            f"{task_id}.txt",
        ]
    left, right = done["left"], done["right"]
    assert left["started_at"] < right["finished_at"] and right["started_at"] < left["finished_at"]  # at once
    assert checkout(repo) == before
    assert git("branch", "--format=%(refname:short)", cwd=repo).splitlines() == [
        "codexd/left",
        "codexd/right",
        "main",
    ]

    report = env.codexd("report", "left")
    assert report.returncode == 0, report.stderr
    assert f"`codexd/left from {head[:12]} (worktree {env.tasks / 'left' / 'worktree'})`" in report.stdout
    assert "work of left" in report.stdout and "1 file changed, 1 insertion(+)" in report.stdout
    as_json = json.loads(env.codexd("report", "right", "--format", "json").stdout)["worktree"]
    assert [c.split(" ", 1)[1] for c in as_json["commits"]] == ["work of right"]
    assert "<h2>Branch</h2>" in env.codexd("report", "right", "--format", "html").stdout

    removed = env.codexd("rm", "left", "right")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [
        f"removed {t} and its worktree {env.tasks / t / 'worktree'}, keeping its branch codexd/{t}"
        for t in ("left", "right")
    ]
    assert git("worktree", "list", "--porcelain", cwd=repo).count("worktree ") == 1
    assert git("log", "--format=%s", "main..codexd/right", cwd=repo) == "work of right"
    git("merge", "-q", "--no-edit", "codexd/left", cwd=env.root / "repo")  # the branch is there to merge


def test_a_stalled_worktree_task_is_resumed_in_the_same_worktree(env, model_world, daemon):
    repo = make_repo(env.root / "repo")
    before = checkout(repo)
    model_world(SCENARIOS)
    env.set(CODEXD_HEALTH__STALL_TIMEOUT="4", CODEXD_HEALTH__MAX_RESTARTS="2")
    daemon()
    submit_in(env, repo, "quiet", "quiet")
    status = finished(env, "quiet", timeout=60)
    assert status["status"] == "completed", status["error"]
    assert (status["stalls"], status["restarts"]) == (1, 1)
    tree = env.tasks / "quiet" / "worktree"
    assert (tree / "first-run.txt").read_text().strip() == str(tree)
    assert (tree / "resumed-run.txt").read_text().strip() == str(tree)
    assert checkout(repo) == before
