"""A corpus of hostile spool files dropped on a running daemon: each is refused with a
reason, taken correctly, or left alone by rule, and the daemon keeps running."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from codexd.daemon.lock import SPOOL_LOCK
from tests.conftest import ROOT, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

FENCE = "+++\n{}\n+++\nDo it.\n"
# name -> (content, words the refusal must contain)
REFUSED: dict[str, tuple[bytes | str, str]] = {
    "up.md": (FENCE.format('task_id = "../escape"'), "invalid task id"),
    "abs.md": (FENCE.format('task_id = "/etc/passwd"'), "invalid task id"),
    "slash.md": (FENCE.format('task_id = "a/b"'), "invalid task id"),
    "dots.md": (FENCE.format('task_id = ".."'), "invalid task id"),
    "dotted.md": (FENCE.format('task_id = ".hidden"'), "invalid task id"),
    "long-id.md": (FENCE.format(f'task_id = "{"x" * 200}"'), "invalid task id"),
    "nul-id.md": (FENCE.format('task_id = "a\\u0000b"'), "invalid task id"),
    "accent-id.md": (FENCE.format('task_id = "ünï"'), "invalid task id"),
    "dash-id.md": (FENCE.format('task_id = "-x"'), "invalid task id"),
    "space-id.md": (FENCE.format('task_id = "a b"'), "invalid task id"),
    "newline-id.md": (FENCE.format('task_id = "a\\nb"'), "invalid task id"),
    "huge.md": ("x" * (2 << 20), "over the 1 MiB limit"),
    "binary.md": (random.Random(1).randbytes(4096), "not UTF-8"),
    "notes.txt": ("Do it.\n", "only .md instruction files are taken"),
    "latin1.md": ("Caf\xe9 au lait\n".encode("latin-1"), "not UTF-8"),
    "empty.md": ("", "no instructions"),
    "blank.md": ("   \n\n\t\n", "no instructions"),
    "only-front.md": ("+++\ntype = 'generic'\n+++\n", "no instructions"),
    "unclosed.md": ("+++\ntype = 'generic'\nDo it.\n", "never closed"),
    "toml-1.md": (FENCE.format("= 1"), "not valid TOML"),
    "toml-2.md": (FENCE.format("key ="), "not valid TOML"),
    "toml-3.md": (FENCE.format("[table"), "not valid TOML"),
    "toml-4.md": (FENCE.format("cwd = '/'\ncwd = '/'"), "not valid TOML"),
    "toml-5.md": (FENCE.format('task_id = "unterminated'), "not valid TOML"),
    "deep-array.md": (FENCE.format("a = " + "[" * 5000 + "]" * 5000), "front matter"),
    "deep-table.md": (FENCE.format("a = " + "{b = " * 2000 + "1" + "}" * 2000), "front matter"),
    "unknown-key.md": (FENCE.format("colour = 'red'"), "unknown front matter key"),
    "table-key.md": (FENCE.format("[types]\nx = 1"), "unknown front matter key"),
    "int-id.md": (FENCE.format("task_id = 5"), "task_id must be a string"),
    "list-type.md": (FENCE.format("type = ['x']"), "type must be a string"),
    "word-timeout.md": (FENCE.format("stall_timeout = 'soon'"), "greater than 0"),
    "negative-timeout.md": (FENCE.format("stall_timeout = -5"), "greater than 0"),
    "nan-timeout.md": (FENCE.format("stall_timeout = nan"), "greater than 0"),
    "unknown-type.md": (FENCE.format("type = 'nope'"), "unknown task type"),
    "cwd-missing.md": (FENCE.format("cwd = '/nonexistent/folder'"), "is not an existing folder"),
    "cwd-file.md": (FENCE.format("cwd = '/etc/hostname'"), "is not an existing folder"),
    "notify-string.md": (FENCE.format("notify_urls = 'json://x'"), "must be a list of strings"),
    "notify-word.md": (FENCE.format("notify_urls = ['hunter2']"), "is not an apprise URL"),
    "notify-tag.md": (FENCE.format("notify_tags = ['a b']"), "is not a tag"),
    "dup-2.md": (FENCE.format('task_id = "dup"'), "already taken"),
}
# name -> the id it gets
ACCEPTED = {
    "new\nline.md": "new-line",
    "Review PRs!.md": "Review-PRs",
    "ünï.md": "n",
    "crlf.md": "crlf",
    "bom.md": "bom-id",
    "nul-body.md": "nul-body",
    "many-lines.md": "many-lines",
    ("L" * 240) + ".md": "L" * 100,
}
LEFT_ALONE = [".hidden.md", "....md", "draft.md.tmp", "upload.md.part"]


def write_corpus(spool: Path, outside: Path) -> None:
    for name, (content, _) in REFUSED.items():
        data = content.encode() if isinstance(content, str) else content
        (spool / name).write_bytes(data)
    for name in ACCEPTED:
        (spool / name).write_text("Do it.\n")
    (spool / "crlf.md").write_bytes(b'+++\r\ntask_id = "crlf"\r\n+++\r\nDo it.\r\n')
    (spool / "bom.md").write_bytes(b'\xef\xbb\xbf+++\ntask_id = "bom-id"\n+++\nDo it.\n')
    (spool / "nul-body.md").write_bytes(b"Do \x00 it.\n")
    (spool / "many-lines.md").write_text("Do it.\n" * 100_000)
    for name in LEFT_ALONE:
        (spool / name).write_text("Do it.\n")
    (spool / "link-out.md").symlink_to("/etc/passwd")
    (spool / "link-dangling.md").symlink_to(outside / "missing")
    (spool / "link-in.md").symlink_to(spool / "crlf.md")
    os.mkfifo(spool / "fifo.md")


def churn(spool: Path, stop: threading.Event) -> int:
    """Files that vanish mid-read: made and removed as fast as possible."""
    made = 0
    while not stop.is_set():
        path = spool / f"vanishing-{made % 7}.md"
        try:
            path.write_text("Do it.\n" * 50)
            path.unlink()
        except FileNotFoundError:
            pass  # the daemon took it first: then it is a task, which is fine too
        made += 1
    return made


def test_a_hostile_spool_never_breaks_the_daemon(env, daemon):
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(ROOT / "bench" / "fake-codex")]), CODEXD_MAX_PARALLEL="8")
    running = daemon()
    outside = env.root / "outside"
    outside.mkdir()
    (env.spool / "dup-1.md").write_text(FENCE.format('task_id = "dup"'))
    wait_for((env.tasks / "dup" / "status.json").exists, 10, "the first dup")
    writer = (env.spool / "still-writing.md").open("w")
    writer.write("Do it.\n")
    writer.flush()
    stop = threading.Event()
    churner = threading.Thread(target=churn, args=(env.spool, stop))
    churner.start()
    write_corpus(env.spool, outside)
    time.sleep(1)
    stop.set()
    churner.join()
    assert (env.spool / "still-writing.md").exists()  # open for writing: not taken yet
    writer.close()

    rejected = env.spool / "rejected"
    refused = {*REFUSED, "link-out.md", "link-dangling.md", "link-in.md", "fifo.md"}
    wait_for(
        lambda: (
            all((rejected / f"{name}.error").exists() for name in refused)
            and all(
                (env.tasks / tid / "status.json").exists() for tid in [*ACCEPTED.values(), "still-writing"]
            )
        ),
        30,
        "every file to be judged",
    )
    for name, (_, words) in REFUSED.items():
        assert words in (rejected / f"{name}.error").read_text(), name
    for name in ("link-out.md", "link-dangling.md", "link-in.md"):
        assert "symbolic link" in (rejected / f"{name}.error").read_text()
    assert "not a regular file" in (rejected / "fifo.md.error").read_text()
    for name, task_id in ACCEPTED.items():
        instructions = (env.tasks / task_id / "instructions.md").read_bytes()
        assert b"Do it." in instructions or b"Do \x00 it." in instructions, name
    left = sorted(p.name for p in env.spool.iterdir() if p.name not in ("rejected", SPOOL_LOCK))
    assert left == sorted(LEFT_ALONE)
    assert not (env.root / "escape").exists() and not (outside / "missing").exists()
    assert running.proc.poll() is None
    health = env.codexd("health")
    assert health.returncode == 0, health.stdout
    print(f"\n{len(refused)} refused, {len(ACCEPTED) + 1} taken, {len(LEFT_ALONE)} left alone by rule")


# -- one scan, in process: every odd name is refused with its .error, and the scan goes on --


def spool_of(tmp_path: Path):
    from codexd.clock import FakeClock
    from codexd.tasks import store
    from codexd.tasks.spool import Spool

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    return Spool(spool, store.TaskStore(tmp_path / "tasks"), ["generic"], FakeClock())


def drop(path: Path, data: str | bytes) -> Path:
    """A file written long enough ago to be taken at once (no writer, settled)."""
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.utime(path, (time.time() - 5, time.time() - 5))
    return path


def errors_in(spool: Path) -> dict[str, str]:
    rejected = spool / "rejected"
    return {p.name: p.read_text() for p in rejected.iterdir() if p.name.endswith(".error")}


LONG = {
    "x" * 252 + ".md": b"+++\ncolour = 'red'\n+++\nDo it.\n",  # 255 bytes, refused for its content
    "y" * 248 + ".txt": b"Do it.\n",  # 252 bytes, refused for its name
    "\u00e9" * 124 + ".txt": b"Do it.\n",  # 252 bytes, two to a character
    "x" * 240 + "-two.txt": b"Do it.\n",  # the same first 240 bytes as the next
    "x" * 240 + "-one.txt": b"Do it.\n",
}


def test_long_names_are_refused_with_an_error_file_and_the_scan_goes_on(tmp_path: Path):
    spool = spool_of(tmp_path)
    for name, data in LONG.items():
        drop(spool.dir / name, data)
    drop(spool.dir / "zz-good.md", "Do it.\n")
    accepted, _ = spool.scan()
    assert [s.task_id for s in accepted] == ["zz-good"]
    errors = errors_in(spool.dir)
    assert len(errors) == len(LONG), sorted(errors)
    for name in errors:
        assert len(name.encode()) <= 255 - len(".99"), name
        name.encode()  # cut at a character boundary: still UTF-8
    notes = "\n".join(errors.values())
    assert "unknown front matter key" in notes and notes.count("only .md instruction files") == 4
    assert len(list((spool.dir / "rejected").iterdir())) == 2 * len(LONG)  # each file kept, beside its note
    assert [p.name for p in spool.dir.iterdir()] == ["rejected"]


def test_a_folder_named_like_an_instruction_file_is_refused_and_other_folders_left(tmp_path: Path):
    spool = spool_of(tmp_path)
    (spool.dir / "x.md").mkdir()
    (spool.dir / "x.md" / "inside.md").write_text("Do it.\n")
    (spool.dir / "drafts").mkdir()
    spool.scan()
    spool.scan()
    assert "is a folder, not an instruction file" in errors_in(spool.dir)["x.md.error"]
    assert (spool.dir / "rejected" / "x.md" / "inside.md").exists()
    assert (spool.dir / "drafts").is_dir()


def test_a_relative_cwd_in_a_spool_file_is_refused(tmp_path: Path):
    spool = spool_of(tmp_path)
    drop(spool.dir / "rel.md", "+++\ncwd = 'src'\n+++\nDo it.\n")
    assert spool.scan()[0] == []
    note = errors_in(spool.dir)["rel.md.error"]
    assert "cwd 'src' is relative: a spool file's cwd must be absolute or start with ~" in note


ODD_NAMES = [
    b"new\nline.txt",
    b"\xff\xfe-latin.md",
    b"caf\xe9.txt",
    b"-rf.txt",
    b"--help.md",
    b"tab\there.txt",
]


def test_odd_names_each_get_an_error_file(tmp_path: Path):
    spool = spool_of(tmp_path)
    for raw in ODD_NAMES:
        path = os.path.join(os.fsencode(spool.dir), raw)
        with open(path, "wb") as f:
            f.write(b"+++\ncolour = 'red'\n+++\nDo it.\n")
        os.utime(path, (time.time() - 5, time.time() - 5))
    drop(spool.dir / "zz-good.md", "Do it.\n")
    accepted, _ = spool.scan()
    assert [s.task_id for s in accepted] == ["zz-good"]
    assert len(errors_in(spool.dir)) == len(ODD_NAMES)


def test_an_unreadable_file_is_refused_and_the_scan_goes_on(tmp_path: Path, monkeypatch):
    spool = spool_of(tmp_path)
    os.chmod(drop(spool.dir / "a-locked.md", "Do it.\n"), 0)
    drop(spool.dir / "zz-good.md", "Do it.\n")
    real = os.open

    def as_another_user(path: Any, flags: int, *args: Any) -> int:
        if os.fspath(path).endswith("a-locked.md"):  # root reads a 000 file: say no as others would
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, flags, *args)

    monkeypatch.setattr(os, "open", as_another_user)
    accepted, _ = spool.scan()
    assert [s.task_id for s in accepted] == ["zz-good"]
    assert "Permission denied" in errors_in(spool.dir)["a-locked.md.error"]


def test_an_error_while_writing_the_error_file_stops_nothing(tmp_path: Path, monkeypatch):
    from codexd.errors import StorageError
    from codexd.tasks import store

    spool = spool_of(tmp_path)
    real = store.write_atomic

    def failing(path: Path, data: bytes, *args: object, **kwargs: object) -> None:
        if path.name.endswith(".error"):
            raise StorageError(f"cannot write {path}: No space left on device")
        real(path, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "write_atomic", failing)
    drop(spool.dir / "a-bad.txt", "Do it.\n")
    drop(spool.dir / "zz-good.md", "Do it.\n")
    accepted, _ = spool.scan()
    assert [s.task_id for s in accepted] == ["zz-good"]
    assert (spool.dir / "rejected" / "a-bad.txt").exists()


# -- the check-then-use race: a file swapped after it was read is never taken --


@pytest.mark.parametrize("swap", ["link", "other file"])
def test_a_spool_file_swapped_after_it_was_read_is_never_taken(tmp_path: Path, monkeypatch, swap):
    from codexd.tasks import intake

    spool = spool_of(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("SECRET KEY\n")
    drop(spool.dir / "job.md", "Do it.\n")
    real = intake.read_identified

    def swapping(where: Path) -> tuple[bytes, intake.FileId]:
        found = real(where)
        where.unlink()
        if swap == "link":
            where.symlink_to(secret)
        else:
            where.write_text("Something else.\n")
        return found

    monkeypatch.setattr(intake, "read_identified", swapping)
    assert spool.scan()[0] == []
    assert "changed while it was being taken" in errors_in(spool.dir)["job.md.error"]
    assert not any(spool.tasks.root.glob("*/instructions.md"))
    assert not any(spool.tasks.root.glob(".incoming/*/*"))
    for file in tmp_path.rglob("*"):
        if file.is_file() and not file.is_symlink() and file != secret:
            assert "SECRET" not in file.read_text(errors="replace"), file
    assert secret.read_text() == "SECRET KEY\n"
