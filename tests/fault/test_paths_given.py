"""Paths a user or an attacker hands to the command line: task ids that climb out of their
folder, `-o` aimed at devices, links and read-only files, and instruction files that never end."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Env

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

BAD_IDS = ["../x", "a/../../b", "..", "a/b", "/tmp/x", ".x", "a b", "x" * 129]


def _plant_spooled(env: Env, task_id: str) -> None:
    """`<spool>/<id>.md` exists, wherever the id points."""
    target = Path(os.path.normpath(env.spool / f"{task_id}.md"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("Do it.\n")


def _one_line_refusal(done: subprocess.CompletedProcess[str], words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert words in done.stderr


@pytest.mark.parametrize("bad", BAD_IDS)
def test_every_command_taking_an_id_refuses_a_bad_one(env: Env, bad: str) -> None:
    env.spool.mkdir()
    (env.tasks / ".requests").mkdir(parents=True)
    if len(bad) <= 128 and not bad.startswith("/"):
        _plant_spooled(env, bad)
    before = sorted(p for p in env.root.rglob("*"))
    for command in (
        ["status", bad],
        ["status", bad, "--json"],
        ["report", bad],
        ["results", bad],
        ["logs", bad],
        ["wait", bad, "--timeout", "1"],
        ["stop", bad, "--timeout", "1"],
        ["restart", bad, "--timeout", "1"],
        ["progress", "--task", bad, "--total", "3"],
        ["aggregate", "--tasks", bad],
    ):
        _one_line_refusal(env.codexd(*command, timeout=20), "invalid task id")
    assert sorted(p for p in env.root.rglob("*")) == before  # nothing written anywhere


def _spooled_task(env: Env) -> str:
    if (env.spool / "job.md").exists():
        return "job"
    env.write("job.md", "Do it.\n")
    done = env.codexd("start", "--instructions", "job.md", "--task-id", "job")
    assert done.returncode == 0, done.stderr
    return "job"


def _outputs(env: Env, target: Path) -> list[list[str]]:
    task_id = _spooled_task(env)
    return [["report", task_id, "-o", str(target)], ["aggregate", "--tasks", task_id, "-o", str(target)]]


def test_output_refuses_a_symbolic_link(env: Env) -> None:
    victim = env.write("victim.txt", "keep me\n")
    link = env.root / "link.md"
    link.symlink_to(victim)
    for command in _outputs(env, link):
        _one_line_refusal(env.codexd(*command), "symbolic link")
    assert link.is_symlink() and victim.read_text() == "keep me\n"


def test_output_refuses_a_device_a_fifo_and_a_folder(env: Env) -> None:
    device = env.root / "null"
    if os.geteuid() == 0:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
    else:
        device = Path("/dev/null")
    fifo = env.root / "pipe"
    os.mkfifo(fifo)
    folder = env.root / "folder"
    folder.mkdir()
    for target in (device, fifo, folder):
        for command in _outputs(env, target):
            done = env.codexd(*command, timeout=20)
            assert done.returncode == 2, (command, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert stat.S_ISCHR(device.lstat().st_mode)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and folder.is_dir()


def test_output_never_changes_a_read_only_file(env: Env) -> None:
    kept = env.write("kept.md", "mine\n")
    kept.chmod(0o444)
    for command in _outputs(env, kept):
        _one_line_refusal(env.codexd(*command), "read-only")
    assert kept.read_text() == "mine\n"


def test_output_replaces_a_regular_file_keeping_its_mode_and_creates_folders(env: Env) -> None:
    mine = env.write("mine.md", "old\n")
    mine.chmod(0o600)
    nested = env.root / ".ai" / "reports" / "x.md"
    for target in (mine, nested):
        for command in _outputs(env, target):
            done = env.codexd(*command)
            assert done.returncode == 0, done.stderr
            assert "job" in target.read_text()
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600
    assert not [p for p in mine.parent.iterdir() if p.name.endswith(".tmp")]


def _start(env: Env, source: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return env.codexd("start", "--instructions", source, timeout=timeout)


def test_instructions_from_an_endless_device_are_refused_at_once(env: Env) -> None:
    _one_line_refusal(_start(env, "/dev/zero"), "not a regular file")


def test_instructions_from_a_huge_sparse_file_are_refused_unread(env: Env) -> None:
    sparse = env.root / "sparse.md"
    with sparse.open("wb") as f:
        f.truncate(2 << 30)
    _one_line_refusal(_start(env, str(sparse)), "over the 1 MiB limit")


def test_instructions_from_a_fifo_or_a_folder_are_refused(env: Env) -> None:
    fifo = env.root / "pipe.md"
    os.mkfifo(fifo)
    _one_line_refusal(_start(env, str(fifo)), "not a regular file")
    (env.root / "dir.md").mkdir()
    _one_line_refusal(_start(env, str(env.root / "dir.md")), "folder")
    assert not env.spool.exists() or not list(env.spool.iterdir())


def test_instructions_from_stdin_are_capped(env: Env) -> None:
    _one_line_refusal(env.codexd("start", "--instructions", "-", input=b"x" * (2 << 20)), "1 MiB")
    done = env.codexd("start", "--instructions", "-", input=b"Do it.\n")
    assert done.returncode == 0, done.stderr


def test_instructions_from_a_closed_stdin_get_one_line(env: Env) -> None:
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" -m codexd start --instructions - <&-', sys.executable],
        env=env.vars,
        capture_output=True,
        text=True,
        timeout=20,
        cwd=env.root,
        check=False,
    )
    _one_line_refusal(done, "stdin")
