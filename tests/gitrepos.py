"""Real git repositories for the worktree tests: made, committed to, and looked at as a user sees them."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=a@b", "-c", "user.name=a", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit(repo: Path, name: str, text: str = "x\n") -> str:
    """`name` written, added and committed; the new commit."""
    (repo / name).write_text(text)
    git("add", name, cwd=repo)
    git("commit", "-q", "-m", f"add {name}", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def make_repo(path: Path, first_commit: bool = True) -> Path:
    """A new repository on `main`, with a first commit of a.txt unless told not to."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    if first_commit:
        commit(path, "a.txt")
    return path


def checkout(repo: Path) -> tuple[str, ...]:
    """What the user sees of their checkout: HEAD, its branch, the index, the files and changes."""
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if ".git" not in p.parts)
    return (
        git("rev-parse", "HEAD", cwd=repo),
        git("symbolic-ref", "HEAD", cwd=repo),
        git("ls-files", "--stage", cwd=repo),
        git("status", "--porcelain", "--untracked-files=all", cwd=repo),
        *files,
    )
