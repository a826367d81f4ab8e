"""tasks/worktree: the git worktree a task runs in, with real git in tmp_path."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from codexd.errors import CodexdError, InvalidInput
from codexd.fields import Fields
from codexd.tasks import intake, worktree
from codexd.tasks.states import TaskState
from codexd.tasks.worktree import Worktree
from tests.gitrepos import checkout, commit, git, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    found = make_repo(tmp_path / "repo")
    (found / "sub").mkdir()
    return found


def test_a_worktree_is_made_in_the_task_folder_on_its_branch_and_the_checkout_is_untouched(repo, tmp_path):
    before = checkout(repo)
    head = git("rev-parse", "HEAD", cwd=repo)
    task_dir = tmp_path / "tasks" / "t1"
    task_dir.mkdir(parents=True)
    made = worktree.create("t1", repo, task_dir, None)
    assert made == Worktree(str(task_dir / "worktree"), "codexd/t1", head, str(repo))
    assert git("symbolic-ref", "HEAD", cwd=task_dir / "worktree") == "refs/heads/codexd/t1"
    assert (task_dir / "worktree" / "a.txt").read_text() == "x\n"
    assert checkout(repo) == before
    assert git("branch", "--format=%(refname:short)", cwd=repo).splitlines() == ["codexd/t1", "main"]


def test_a_worktree_starts_from_the_base_the_task_names(repo, tmp_path):
    first = git("rev-parse", "HEAD", cwd=repo)
    git("tag", "v1", cwd=repo)
    commit(repo, "b.txt")
    made = worktree.create("t2", repo / "sub", tmp_path / "t2", "v1")
    assert made.base == first
    assert not (Path(made.path) / "b.txt").exists()


def test_codex_works_in_the_same_subfolder_of_the_worktree(repo, tmp_path):
    made = worktree.create("t3", repo / "sub", tmp_path / "t3", None)
    assert worktree.codex_cwd(made, str(repo / "sub")) == Path(made.path) / "sub"
    assert worktree.codex_cwd(made, str(repo)) == Path(made.path)
    assert worktree.codex_cwd(made, None) == Path(made.path)


def test_a_folder_outside_git_a_repository_without_commits_and_a_bad_base_are_refused(tmp_path, repo):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InvalidInput, match=r"cwd .*plain is not in a git repository: .*--no-worktree"):
        worktree.repository(plain)
    empty = tmp_path / "empty"
    empty.mkdir()
    git("init", "-q", cwd=empty)
    with pytest.raises(InvalidInput, match=r"the git repository .*empty has no commit yet: .*commit once"):
        worktree.repository(empty)
    with pytest.raises(InvalidInput, match=r"base 'nope' is not a commit of the repository"):
        worktree.repository(repo, "nope")


def test_without_git_the_refusal_says_git_is_missing(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(InvalidInput, match="git is not installed"):
        worktree.repository(repo)


def test_a_branch_of_that_name_already_there_is_refused_naming_how_to_delete_it(repo, tmp_path):
    git("branch", "codexd/t4", cwd=repo)
    with pytest.raises(CodexdError, match=r"branch codexd/t4 already exists .*git -C .* branch -D codexd/t4"):
        worktree.create("t4", repo, tmp_path / "t4", None)
    assert not (tmp_path / "t4" / "worktree").exists()


def test_its_own_worktree_from_a_launch_that_failed_is_taken_again(repo, tmp_path):
    first = worktree.create("t5", repo, tmp_path / "t5", None)
    assert worktree.create("t5", repo, tmp_path / "t5", None) == first


def test_a_worktree_removed_by_hand_is_made_again_on_its_branch_with_its_commits(repo, tmp_path):
    made = worktree.create("t6", repo, tmp_path / "t6", None)
    commit(Path(made.path), "work.txt")
    subprocess.run(["rm", "-rf", made.path], check=True)
    worktree.reopen(made)
    assert (Path(made.path) / "work.txt").exists()
    assert git("symbolic-ref", "HEAD", cwd=Path(made.path)) == "refs/heads/codexd/t6"
    worktree.reopen(made)  # there: nothing to do


def test_describe_lists_the_commits_since_the_base_and_the_diff_stat_bounded(repo, tmp_path):
    made = worktree.create("t7", repo, tmp_path / "t7", None)
    for n in range(3):
        commit(Path(made.path), f"f{n}.txt", "one\ntwo\n")
    (Path(made.path) / "loose.txt").write_text("not committed\n")
    work = worktree.describe(made, most=2)
    assert [line.split(" ", 1)[1] for line in work.commits] == ["add f2.txt", "add f1.txt"]
    assert work.more_commits
    assert work.stat[-1] == "3 files changed, 6 insertions(+)"
    assert any(line.startswith("f0.txt") for line in work.stat)
    assert work.uncommitted == 1 and work.problem is None
    assert worktree.describe(made).commits[2].endswith("add f0.txt")


def test_describe_says_why_when_git_cannot_tell(tmp_path):
    gone = Worktree(str(tmp_path / "gone"), "codexd/x", "0" * 40, str(tmp_path))
    work = worktree.describe(gone)
    assert work.commits == () and work.problem is not None and "codexd/x" in work.problem


def test_the_record_reads_back_and_an_incomplete_one_is_ignored():
    tree = Worktree("/w", "codexd/a", "abc", "/r")
    assert Worktree.read(Fields(tree.to_dict())) == tree
    bad = Fields({"worktree": {"path": "/w"}})
    assert Worktree.read(bad.within("worktree")) is None and bad.bad == ["worktree.path"]
    assert Worktree.read(Fields({})) is None


@pytest.mark.parametrize(
    ("env", "table", "expected"),
    [
        ({}, {}, False),
        ({}, {"worktree": True}, True),
        ({"CODEXD_WORKTREE": "false"}, {"worktree": True}, False),
    ],
)
def test_the_default_comes_from_the_environment_else_the_config(env, table, expected):
    assert worktree.default_of(table, env) is expected


def test_intake_refuses_a_worktree_task_outside_git_and_a_base_without_a_worktree(tmp_path, repo):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InvalidInput, match="is not in a git repository"):
        intake.check(f'+++\ncwd = "{plain}"\nworktree = true\n+++\ndo it\n'.encode(), ["generic"])
    with pytest.raises(InvalidInput, match="is not in a git repository"):
        intake.check(f'+++\ncwd = "{plain}"\n+++\ndo it\n'.encode(), ["generic"], worktree_default=True)
    opted_out = intake.check(
        f'+++\ncwd = "{plain}"\nworktree = false\n+++\nx\n'.encode(), ["generic"], None, True
    )
    assert opted_out.fields["worktree"] is False
    with pytest.raises(InvalidInput, match="base needs worktree = true"):
        intake.check(f'+++\ncwd = "{repo}"\nbase = "main"\n+++\ndo it\n'.encode(), ["generic"])
    with pytest.raises(InvalidInput, match="front matter worktree must be true or false"):
        intake.check(f'+++\ncwd = "{repo}"\nworktree = "yes"\n+++\ndo it\n'.encode(), ["generic"])
    with pytest.raises(InvalidInput, match="needs a cwd"):
        intake.check(b"+++\nworktree = true\n+++\ndo it\n", ["generic"])
    taken = intake.check(f'+++\ncwd = "{repo}"\n+++\ndo it\n'.encode(), ["generic"], None, True)
    assert taken.fields["worktree"] is True


def test_status_json_keeps_the_worktree_and_the_taken_choice_and_has_none_for_other_tasks():
    from codexd.tasks.records import TaskStatus
    from codexd.tasks.taken import Taken

    plain = TaskStatus("t", "generic", TaskState.QUEUED, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "l")
    assert "worktree" not in plain.to_dict()
    tree = Worktree("/w", "codexd/t", "abc", "/r")
    taken = Taken.of({"worktree": True, "base": "main"}, 0)
    status = plain.with_(worktree=tree, taken=taken)
    again = TaskStatus.from_dict(json.loads(json.dumps(status.to_dict())))
    assert again.worktree == tree and again.taken == taken
    assert again.taken is not None and again.taken.worktree and again.taken.base == "main"
