"""A task run in a git worktree of its own (`worktree = true`): checked at submission, made
at its first launch, reused by every resume and retry, described for its report.

codexd makes the worktree itself (`git worktree add -b codexd/<id> <task folder>/worktree
<base>`) rather than passing `codex exec --worktree`: Codex 0.169 puts its worktree under
`$CODEX_HOME/worktrees/`, on a detached HEAD (no branch), takes no branch name or base, and a
`codex exec resume` runs in the folder it is started in, not that worktree. Inside the task
folder, everything of a task is in one place; `rm` removes the worktree with git
(tasks/removal.py) and keeps the branch. The user's checkout is never touched: git only adds
the branch and the worktree's entry under its `.git`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codexd.errors import CodexdError, InvalidInput
from codexd.fields import Fields

GIT_TIMEOUT = 60.0
BRANCH_PREFIX = "codexd/"
FOLDER = "worktree"  # in the task's folder
MAX_COMMITS = 50  # a report lists at most this many commits
MAX_STAT_LINES = 40  # and this many lines of the diff stat (its summary line always)
_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "f", "n", ""})


@dataclass(frozen=True)
class Worktree:
    """status.json `worktree`: where it is, its branch, the commit it started from, the
    repository (top folder of the user's checkout) it belongs to."""

    path: str
    branch: str
    base: str
    repo: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "branch": self.branch, "base": self.base, "repo": self.repo}

    @classmethod
    def read(cls, f: Fields) -> Worktree | None:
        if not f.data:
            return None
        path, branch, base = f.text("path"), f.text("branch"), f.text("base")
        if not (path and branch and base):
            f.bad.append(f.prefix + "path")
            return None
        return cls(path, branch, base, f.text("repo") or "")


@dataclass(frozen=True)
class Work:
    """What a task did on its branch: its commits (newest first) and the diff stat."""

    commits: tuple[str, ...] = ()
    more_commits: bool = False  # more than were listed
    stat: tuple[str, ...] = ()
    uncommitted: int = 0  # files changed in the worktree and not committed
    problem: str | None = None  # why git could not tell (the repository moved, git missing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "commits": list(self.commits),
            "more_commits": self.more_commits,
            "diff_stat": list(self.stat),
            "uncommitted_files": self.uncommitted,
            "problem": self.problem,
        }


def branch_of(task_id: str) -> str:
    return BRANCH_PREFIX + task_id


def flag(value: str | None) -> bool | None:
    """CODEXD_WORKTREE's value as a boolean (as the settings read it); None when unset or unclear."""
    if value is None:
        return None
    word = value.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def default_of(table: dict[str, Any], environ: dict[str, str] | os._Environ[str]) -> bool:
    """The `worktree` setting for `codexd start`, from the environment, else the config file."""
    found = flag(environ.get("CODEXD_WORKTREE"))
    return found if found is not None else table.get("worktree") is True


# -- git ---------------------------------------------------------------------------------------


def _git(args: list[str], cwd: Path | str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-C", str(cwd), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise InvalidInput("git is not installed (or not on PATH): a worktree task needs git") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidInput(f"cannot run git in {cwd}: {exc}") from None


def _out(args: list[str], cwd: Path | str) -> str | None:
    """git's output, stripped; None when git says no."""
    done = _git(args, cwd)
    return done.stdout.strip() if done.returncode == 0 else None


def _why(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stderr.strip().splitlines() or ["git failed"])[-1].removeprefix("fatal: ")


def repository(cwd: Path, base: str | None = None) -> tuple[str, str]:
    """The top folder of the repository `cwd` is in and the commit a worktree would start from
    (`base`, else HEAD); InvalidInput, one line, when there is none."""
    top = _out(["rev-parse", "--show-toplevel"], cwd)
    if not top:
        raise InvalidInput(
            f"cwd {cwd} is not in a git repository: a worktree task needs one (`git init` and a "
            "first commit there), or drop worktree (--no-worktree, or worktree = false)"
        )
    if _out(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], top) is None:
        raise InvalidInput(
            f"the git repository {top} has no commit yet: a worktree starts from a commit; commit "
            "once, then submit the task again"
        )
    commit = _out(["rev-parse", "--verify", "--quiet", f"{base or 'HEAD'}^{{commit}}"], top)
    if commit is None:
        raise InvalidInput(
            f"base {base!r} is not a commit of the repository {top}: name a branch, tag or commit "
            "(`git log` shows them), or drop base to start from HEAD"
        )
    return top, commit


def unbranched(taken: Callable[[str], bool], cwd: Path, given: str | None) -> Callable[[str], bool]:
    """`taken`, saying also an id whose branch codexd/<id> the repository has is taken (so a
    made-up id skips it); a `given` id whose branch is there is refused, naming the fix."""
    top, _ = repository(cwd)

    if given is not None and _has_branch(top, branch_of(given)):
        raise InvalidInput(_branch_there(given, top))
    return lambda task_id: taken(task_id) or _has_branch(top, branch_of(task_id))


def _has_branch(top: str, branch: str) -> bool:
    return _out(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], top) is not None


def _branch_there(task_id: str, top: str) -> str:
    branch = branch_of(task_id)
    return (
        f"the branch {branch} already exists in {top} (from an earlier task of this id?): "
        f"delete it with `git -C {top} branch -D {branch}` or submit under another id"
    )


# -- at launch ---------------------------------------------------------------------------------


def create(task_id: str, cwd: Path, task_dir: Path, base: str | None) -> Worktree:
    """A new worktree in the task's folder on the new branch codexd/<task_id>; CodexdError
    (one line) when it cannot be made."""
    try:
        top, commit = repository(cwd, base)
    except InvalidInput as exc:
        raise CodexdError(str(exc)) from None
    path, branch = task_dir / FOLDER, branch_of(task_id)
    if _has_branch(top, branch):
        if _is_worktree_of(path, branch):
            # Made by a launch whose Codex then failed to start (its record was not written):
            # nothing ran in it, so its branch is still at the commit it started from.
            return Worktree(str(path), branch, _out(["rev-parse", "HEAD"], path) or commit, top)
        raise CodexdError(_branch_there(task_id, top))
    done = _git(["worktree", "add", "--quiet", "-b", branch, str(path), commit], top)
    if done.returncode != 0:
        raise CodexdError(f"git could not make the worktree {path}: {_why(done)}")
    return Worktree(str(path), branch, commit, top)


def reopen(tree: Worktree) -> None:
    """The recorded worktree, made again on its branch if its folder is gone; CodexdError if not."""
    if (Path(tree.path) / ".git").exists():
        return
    repo = tree.repo or tree.path
    _git(["worktree", "prune"], repo)  # forget the entry of a folder removed by hand
    done = _git(["worktree", "add", "--quiet", tree.path, tree.branch], repo)
    if done.returncode != 0:
        raise CodexdError(f"the task's worktree {tree.path} is gone; git cannot make it again: {_why(done)}")


def _is_worktree_of(path: Path, branch: str) -> bool:
    head = _out(["symbolic-ref", "--quiet", "HEAD"], path) if (path / ".git").is_file() else None
    return head == f"refs/heads/{branch}"


def codex_cwd(tree: Worktree, cwd: str | None) -> Path:
    """Where Codex works: the same folder inside the worktree as the task's cwd in its checkout
    (made there when git does not hold it: an empty or untracked folder)."""
    if cwd and tree.repo:
        inside = os.path.relpath(os.path.realpath(cwd), os.path.realpath(tree.repo))
        if inside != "." and not inside.startswith(".."):
            folder = Path(tree.path) / inside
            if os.path.isdir(tree.path):
                folder.mkdir(parents=True, exist_ok=True)
            return folder
    return Path(tree.path)


# -- for reports -------------------------------------------------------------------------------


def describe(tree: Worktree, most: int = MAX_COMMITS) -> Work:
    """The branch's commits since its base (at most `most`) and their diff stat; never raises."""
    repo = tree.repo or tree.path
    span = f"{tree.base}..refs/heads/{tree.branch}"
    try:
        log = _git(["log", "--oneline", "--no-decorate", f"-n{most + 1}", span], repo)
        if log.returncode != 0:
            return Work(problem=f"git cannot read the branch {tree.branch} in {repo}: {_why(log)}")
        stat = _out(["diff", "--stat=100", span], repo) or ""
        changes = _out(["status", "--porcelain"], tree.path) if os.path.isdir(tree.path) else None
    except InvalidInput as exc:
        return Work(problem=str(exc))
    commits = log.stdout.splitlines()
    lines = stat.splitlines()
    shown = lines if len(lines) <= MAX_STAT_LINES + 1 else [*lines[:MAX_STAT_LINES], "...", lines[-1]]
    return Work(
        tuple(commits[:most]),
        len(commits) > most,
        tuple(line.strip() for line in shown),
        len(changes.splitlines()) if changes else 0,
    )
