"""`worktree = true` / `codexd start --worktree` as a user meets it: refusals at submission,
and every run of a task (a retry, a fresh retry) in the same worktree (issue 16)."""

from __future__ import annotations

import json
import stat

import pytest

from tests.acceptance.test_day_two import FLAKY
from tests.conftest import wait_for
from tests.gitrepos import git, make_repo

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(60)]

# The flaky "codex" of test_day_two, noting also the folder it runs in.
WHERE = FLAKY.replace("#!/bin/sh\n", '#!/bin/sh\npwd >> "$CODEXD_TASK_DIR/pwd.log"\n', 1)


def start(env, *args: str):
    return env.codexd("start", "--instructions", "-", *args, input=b"Build it.\n")


def one_line_refusal(done, text: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert text in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def where_codex(env) -> None:
    script = env.write("where-codex", WHERE)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(script)]))


def ended(env, task_id: str) -> dict:
    done = env.codexd("wait", task_id, "--timeout", "20")
    assert done.returncode in (0, 1), done.stderr
    return env.status(task_id)


def test_start_with_worktree_outside_a_git_repository_is_refused_in_one_line(env):
    plain = env.root / "plain"
    plain.mkdir()
    one_line_refusal(start(env, "--worktree", "--cwd", str(plain)), f"cwd {plain} is not in a git repository")
    assert not list(env.spool.glob("*.md"))


def test_a_repository_without_a_commit_and_a_base_that_is_no_commit_are_refused(env):
    empty = make_repo(env.root / "empty", first_commit=False)
    one_line_refusal(
        start(env, "--worktree", "--cwd", str(empty)), f"the git repository {empty} has no commit yet"
    )
    repo = make_repo(env.root / "repo")
    one_line_refusal(
        start(env, "--worktree", "--cwd", str(repo), "--base", "nope"), "base 'nope' is not a commit"
    )
    one_line_refusal(start(env, "--cwd", str(repo), "--base", "main"), "base needs worktree = true")


def test_the_worktree_setting_makes_it_the_default_and_a_task_can_opt_out(env):
    plain = env.root / "plain"
    plain.mkdir()
    env.set(CODEXD_WORKTREE="true")
    one_line_refusal(start(env, "--cwd", str(plain)), "is not in a git repository")
    done = start(env, "--no-worktree", "--cwd", str(plain), "--task-id", "out")
    assert done.returncode == 0 and done.stdout == "out\n", done.stderr


def test_a_spool_file_for_a_worktree_outside_git_is_rejected_with_its_reason(env, daemon):
    plain = env.root / "plain"
    plain.mkdir()
    daemon()
    spool = env.spool
    (spool / "job.md").write_text(f'+++\ncwd = "{plain}"\nworktree = true\n+++\nBuild it.\n')
    error = spool / "rejected" / "job.md.error"
    wait_for(error.exists, 10, "the file to be rejected")
    assert f"cwd {plain} is not in a git repository" in error.read_text()
    assert not (env.tasks / "job").exists()


def test_every_run_of_a_task_a_retry_and_a_fresh_one_works_in_the_same_worktree(env, daemon):
    repo = make_repo(env.root / "repo")
    (repo / "sub").mkdir()
    where_codex(env)
    daemon()
    done = start(env, "--worktree", "--cwd", str(repo / "sub"), "--task-id", "build")
    assert done.returncode == 0, done.stderr
    first = ended(env, "build")
    assert first["status"] == "failed"
    tree = env.tasks / "build" / "worktree"
    head = git("rev-parse", "HEAD", cwd=repo)
    assert first["worktree"] == {"path": str(tree), "branch": "codexd/build", "base": head, "repo": str(repo)}
    assert env.codexd("retry", "build").returncode == 0
    assert ended(env, "build")["status"] == "failed"
    (env.root / "pass").touch()
    assert env.codexd("retry", "build", "--fresh").returncode == 0
    final = ended(env, "build")
    assert final["status"] == "completed" and final["worktree"] == first["worktree"]
    ran_in = (env.tasks / "build" / "pwd.log").read_text().splitlines()
    assert ran_in == [str(tree / "sub")] * 3
    assert all(
        f"-C {tree / 'sub'} " in run for run in (env.tasks / "build" / "argv.log").read_text().splitlines()
    )
    assert git("branch", "--format=%(refname:short)", cwd=repo).splitlines() == ["codexd/build", "main"]
    assert git("symbolic-ref", "HEAD", cwd=repo) == "refs/heads/main"
    shown = env.codexd("status", "build").stdout
    assert f"branch    codexd/build from {head[:12]}   worktree {tree}" in shown


def test_a_branch_of_the_tasks_name_already_there_is_refused_or_skipped_at_submission(env):
    repo = make_repo(env.root / "repo")
    git("branch", "codexd/again", cwd=repo)
    one_line_refusal(
        start(env, "--worktree", "--cwd", str(repo), "--task-id", "again"),
        f"the branch codexd/again already exists in {repo} (from an earlier task of this id?): "
        f"delete it with `git -C {repo} branch -D codexd/again`",
    )
    path = env.write("again.md", "Build it.\n")
    done = env.codexd("start", "--instructions", str(path), "--worktree", "--cwd", str(repo))
    assert done.returncode == 0 and done.stdout == "again-2\n", done.stderr  # a made-up id skips it


def test_a_spool_task_whose_branch_is_already_there_fails_naming_git_branch_d(env, daemon):
    repo = make_repo(env.root / "repo")
    git("branch", "codexd/again", cwd=repo)
    where_codex(env)
    (env.root / "pass").touch()
    daemon()
    (env.spool / "again.md").write_text(f'+++\ncwd = "{repo}"\nworktree = true\n+++\nBuild it.\n')
    wait_for((env.tasks / "again" / "status.json").exists, 10, "the task to be taken")
    failed = ended(env, "again")
    assert failed["status"] == "failed" and "worktree" not in failed
    assert f"git -C {repo} branch -D codexd/again" in failed["error"]
    git("branch", "-D", "codexd/again", cwd=repo)
    assert env.codexd("retry", "again").returncode == 0
    assert ended(env, "again")["status"] == "completed"


def test_rm_of_a_task_whose_codex_never_started_removes_its_worktree_and_keeps_the_branch(env, daemon):
    repo = make_repo(env.root / "repo")
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(env.root / "no-such-codex")]))
    daemon()
    assert start(env, "--worktree", "--cwd", str(repo), "--task-id", "lost").returncode == 0
    assert ended(env, "lost")["status"] == "failed"
    tree = env.tasks / "lost" / "worktree"
    done = env.codexd("rm", "lost")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"removed lost and its worktree {tree}, keeping its branch codexd/lost\n"
    assert git("worktree", "list", "--porcelain", cwd=repo).count("worktree ") == 1
    assert git("branch", "--list", "codexd/lost", cwd=repo)


def test_with_the_setting_on_a_spool_file_runs_in_a_worktree_unless_it_opts_out(env, daemon):
    repo = make_repo(env.root / "repo")
    where_codex(env)
    (env.root / "pass").touch()
    env.set(CODEXD_WORKTREE="true")
    daemon()
    (env.spool / "inside.md").write_text(f'+++\ncwd = "{repo}"\n+++\nBuild it.\n')
    (env.spool / "outside.md").write_text(f'+++\ncwd = "{repo}"\nworktree = false\n+++\nBuild it.\n')
    wait_for((env.tasks / "outside" / "status.json").exists, 10, "the tasks to be taken")
    inside, outside = ended(env, "inside"), ended(env, "outside")
    assert inside["status"] == outside["status"] == "completed"
    assert inside["worktree"]["branch"] == "codexd/inside" and "worktree" not in outside
    assert (env.tasks / "inside" / "pwd.log").read_text() == f"{env.tasks / 'inside' / 'worktree'}\n"
    assert (env.tasks / "outside" / "pwd.log").read_text() == f"{repo}\n"
