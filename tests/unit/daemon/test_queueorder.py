"""The order of the queue, decided without processes: dependencies, priorities, one folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexd.daemon import queueorder
from codexd.daemon.queueorder import Lookup, Plan, plan
from codexd.tasks.records import Cursor, TaskStatus, Waiting
from codexd.tasks.states import TaskState
from codexd.tasks.taken import Taken

AT = "2026-11-26T19:00:00+00:00"


def task(
    task_id: str,
    n: int = 0,
    *,
    after: tuple[str, ...] = (),
    priority: int = 0,
    cwd: str | None = None,
    state: TaskState = TaskState.QUEUED,
) -> TaskStatus:
    return TaskStatus(
        task_id=task_id,
        type="generic",
        status=state,
        created_at=AT,
        updated_at=AT,
        log_file="",
        cwd=cwd or f"/work/{task_id}",
        daemon=Cursor(accepted_ns=n),
        taken=Taken(after=after, priority=priority),
    )


def ids(decided: Plan) -> tuple[list[str], dict[str, str | None], dict[str, str]]:
    return (
        [s.task_id for s in decided.start],
        {s.task_id: (w.reason if w else None) for s, w in decided.wait},
        {s.task_id: why for s, why in decided.cancel},
    )


def test_without_order_the_oldest_start_first_into_the_free_slots() -> None:
    queued = [task("c", 3), task("a", 1), task("b", 2)]
    assert ids(plan(queued, [], {}, free=2)) == (["a", "b"], {"c": None}, {})


def test_higher_priority_starts_first_and_equal_priorities_keep_submission_order() -> None:
    queued = [task("low1", 1), task("low2", 2), task("high", 3, priority=5), task("neg", 0, priority=-1)]
    started, waiting, _ = ids(plan(queued, [], {}, free=1))
    assert started == ["high"]
    assert ids(plan(queued, [], {}, free=4))[0] == ["high", "low1", "low2", "neg"]
    assert waiting == {"low1": None, "low2": None, "neg": None}  # only a slot is missing: no reason


def test_a_task_waits_for_what_it_runs_after_and_says_each_ones_state() -> None:
    running = [task("a", 1, state=TaskState.IN_PROGRESS)]
    queued = [task("b", 2), task("c", 3, after=("a", "b"))]
    started, waiting, cancelled = ids(plan(queued, running, {}, free=3))
    assert started == ["b"]
    assert waiting == {"c": "waiting for a (in_progress), b (queued)"}
    assert cancelled == {}


def test_a_task_starts_once_all_it_runs_after_completed() -> None:
    queued = [task("c", 3, after=("a", "b"))]
    states = {"a": "completed", "b": "completed"}
    assert ids(plan(queued, [], states, free=1)) == (["c"], {}, {})


def test_a_waiting_task_leaves_its_slot_to_the_next() -> None:
    queued = [task("b", 1, after=("a",), priority=9), task("x", 2)]
    started, waiting, _ = ids(plan(queued, [], {"a": "in_progress"}, free=1))
    assert started == ["x"]
    assert waiting == {"b": "waiting for a (in_progress)"}


@pytest.mark.parametrize(
    ("state", "words"),
    [("failed", "failed"), ("cancelled", "was cancelled"), (None, "was removed")],
)
def test_a_failed_cancelled_or_removed_dependency_cancels_the_task_naming_it(
    state: str | None, words: str
) -> None:
    queued = [task("b", 2, after=("ok", "a"))]
    decided = plan(queued, [], {"ok": "completed", "a": state}, free=1)
    assert ids(decided) == ([], {}, {"b": f"a, which it runs after, {words}"})


def test_a_cancel_carries_down_the_chain_in_one_round() -> None:
    queued = [task("c", 3, after=("b",)), task("b", 2, after=("a",)), task("d", 4)]
    _, _, cancelled = ids(plan(queued, [], {"a": "failed"}, free=2))
    assert cancelled == {
        "b": "a, which it runs after, failed",
        "c": "b, which it runs after, was cancelled",
    }
    assert ids(plan(queued, [], {"a": "failed"}, free=2))[0] == ["d"]


def test_a_long_list_of_dependencies_is_shown_cut() -> None:
    names = tuple(f"t{n}" for n in range(8))
    queued = [task("z", 9, after=names)]
    _, waiting, _ = ids(plan(queued, [], dict.fromkeys(names, "queued"), free=1))
    assert waiting["z"] == (
        "waiting for t0 (queued), t1 (queued), t2 (queued), t3 (queued), t4 (queued) and 3 more"
    )


def test_a_task_in_the_folder_of_a_running_one_waits_for_it() -> None:
    running = [task("a", 1, cwd="/repo", state=TaskState.STALLED)]
    queued = [task("b", 2, cwd="/repo"), task("c", 3, cwd="/other")]
    assert ids(plan(queued, running, {}, free=3)) == (["c"], {"b": "waiting for a: same folder"}, {})


def test_of_two_queued_tasks_in_one_folder_only_the_first_starts() -> None:
    queued = [task("b", 2, cwd="/repo"), task("a", 1, cwd="/repo/")]
    assert ids(plan(queued, [], {}, free=2)) == (["a"], {"b": "waiting for a: same folder"}, {})


def test_a_folder_reached_through_a_link_is_the_same_folder(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "repo")
    running = [task("a", 1, cwd=str(tmp_path / "repo"), state=TaskState.IN_PROGRESS)]
    queued = [task("b", 2, cwd=str(tmp_path / "link"))]
    assert ids(plan(queued, running, {}, free=1))[1] == {"b": "waiting for a: same folder"}


def test_share_folders_lets_them_run_at_once() -> None:
    running = [task("a", 1, cwd="/repo", state=TaskState.IN_PROGRESS)]
    queued = [task("b", 2, cwd="/repo"), task("c", 3, cwd="/repo")]
    assert ids(plan(queued, running, {}, free=3, share_folders=True)) == (["b", "c"], {}, {})


def test_a_task_in_a_worktree_of_its_own_never_collides() -> None:
    own = task("b", 2, cwd="/repo").with_(taken=Taken(worktree=True))
    running = [task("a", 1, cwd="/repo", state=TaskState.IN_PROGRESS)]
    assert not queueorder.shares_checkout(own)
    assert ids(plan([own], running, {}, free=1))[0] == ["b"]


def test_outside_names_only_the_dependencies_the_books_do_not_hold() -> None:
    queued = [task("b", after=("a", "x")), task("c", after=("b", "y"))]
    assert queueorder.outside(queued, ["a", "b", "c"]) == {"x", "y"}


def test_the_lookup_reads_each_id_once_until_something_changes() -> None:
    reads: list[str] = []
    found = {"a": "completed", "b": "failed", "c": None}

    def read(task_id: str) -> str | None:
        reads.append(task_id)
        return found[task_id]

    lookup = Lookup(read, refresh=5.0)
    assert lookup.states(["a", "b", "c"], 0.0) == found
    assert lookup.states(["a", "b"], 1.0) == {"a": "completed", "b": "failed"}
    assert sorted(reads) == ["a", "b", "c"]  # nothing read twice within the refresh
    lookup.forget()  # some state changed: read again
    lookup.states(["a"], 2.0)
    assert reads.count("a") == 2
    found["b"] = None
    assert lookup.states(["b"], 5.0) == {"b": None}  # the refresh passed: a removal announces nothing


def test_the_plan_keeps_a_waiting_reason_as_a_waiting_record() -> None:
    queued = [task("b", 2, after=("a",))]
    decided = plan(queued, [], {"a": "queued"}, free=1)
    assert decided.wait == ((queued[0], Waiting("waiting for a (queued)")),)
