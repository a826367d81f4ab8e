"""`after` and `priority`: checked in the front matter, dependencies known at submission, kept
in status.json (`taken`, and shown at its top level)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codexd.clock import FakeClock
from codexd.errors import InvalidInput
from codexd.fields import Fields
from codexd.tasks import frontmatter, intake, store
from codexd.tasks.records import TaskStatus
from codexd.tasks.spool import REJECTED, Spool
from codexd.tasks.taken import Taken

pytestmark = pytest.mark.timeout(30)


def front(text: str) -> bytes:
    return f"+++\n{text}\n+++\nDo it.\n".encode()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('after = "a"', "front matter after must be a list of strings"),
        ("after = [1]", "front matter after must be a list of strings"),
        ('after = ["../x"]', "front matter after: '../x' is not a task id"),
        ('task_id = "me"\nafter = ["me"]', "front matter after names the task itself (me)"),
        ("priority = true", "front matter priority must be a whole number from -1000 to 1000"),
        ("priority = 1001", "front matter priority must be a whole number"),
        ("priority = 1.5", "front matter priority must be a whole number"),
        ('priority = "9"', "front matter priority must be a whole number"),
    ],
)
def test_bad_order_fields_are_refused_with_one_line(text: str, said: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        frontmatter.parse(front(text))
    assert str(caught.value).startswith(said) and "\n" not in str(caught.value)


def test_more_than_a_hundred_dependencies_are_refused() -> None:
    names = ", ".join(f'"t{n}"' for n in range(101))
    with pytest.raises(InvalidInput, match="after names 101 tasks: at most 100"):
        frontmatter.parse(front(f"after = [{names}]"))


def test_taken_keeps_after_once_each_and_priority_and_reads_them_back() -> None:
    taken = Taken.of({"after": ["a", "b", "a"], "priority": -5}, 0)
    assert (taken.after, taken.priority) == (("a", "b"), -5)
    assert Taken.read(Fields(taken.to_dict())) == taken
    older = Taken.read(Fields({"body_offset": 3, "own_urls": False}))  # an older record: none, 0
    assert older == Taken(3)


def test_a_hand_made_record_with_bad_order_fields_reads_as_defaults() -> None:
    bad = Fields({"body_offset": 1, "after": ["ok", "no way"], "priority": 10**6})
    taken = Taken.read(bad)
    assert taken is not None and (taken.after, taken.priority) == (("ok",), 1000)
    assert "after" in bad.bad


def spool_of(tmp_path: Path) -> Spool:
    (tmp_path / "spool").mkdir(mode=0o700)
    (tmp_path / "tasks").mkdir()
    return Spool(tmp_path / "spool", store.TaskStore(tmp_path / "tasks"), ["generic"], FakeClock())


def drop(spool: Spool, name: str, data: bytes) -> TaskStatus | float | None:
    path = spool.dir / name
    path.write_bytes(data)
    os.utime(path, (0, 0))  # settled long ago
    return spool.take(path)


def test_the_spool_takes_a_task_after_a_known_one_and_status_json_shows_it(tmp_path: Path) -> None:
    spool = spool_of(tmp_path)
    assert isinstance(drop(spool, "a.md", b"Do a.\n"), TaskStatus)
    taken = drop(spool, "b.md", front('after = ["a"]\npriority = 4'))
    assert isinstance(taken, TaskStatus)
    written = spool.tasks.read_status_dict("b")
    assert (written["after"], written["priority"]) == (["a"], 4)
    assert (written["taken"]["after"], written["taken"]["priority"]) == (["a"], 4)


def test_the_spool_rejects_an_unknown_dependency_and_one_naming_its_own_file(tmp_path: Path) -> None:
    spool = spool_of(tmp_path)
    assert drop(spool, "b.md", front('after = ["nope"]')) is None
    note = (spool.dir / REJECTED / "b.md.error").read_text()
    assert "refused 'b.md': unknown task id 'nope' in after: no task has that id" in note
    assert drop(spool, "c.md", front('after = ["c"]')) is None
    assert "front matter after names the task itself (c)" in (spool.dir / REJECTED / "c.md.error").read_text()
    assert not spool.tasks.is_taken("b") and not spool.tasks.is_taken("c")


def test_a_task_may_run_after_one_still_in_the_spool(tmp_path: Path) -> None:
    spool = spool_of(tmp_path)
    (spool.dir / "first.md").write_text("Do it first.\n")
    assert isinstance(drop(spool, "second.md", front('after = ["first"]')), TaskStatus)


def test_submit_refuses_an_unknown_dependency_before_anything_is_written(tmp_path: Path) -> None:
    spool_dir, tasks = tmp_path / "spool", store.TaskStore(tmp_path / "tasks")
    with pytest.raises(InvalidInput, match="unknown task id 'nope' in after"):
        intake.submit(
            b"Do it.\n",
            "t.md",
            tasks=tasks,
            spool_dir=spool_dir,
            known_types=["generic"],
            overrides={"after": ["nope"], "cwd": str(tmp_path)},
        )
    assert list(spool_dir.iterdir()) == []
