"""Front matter, task ids, events and reports to progress, and how a run ended."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codexd.codex import outcome
from codexd.codex.events import apply_event, apply_report, shown_command
from codexd.errors import InvalidInput
from codexd.tasks import frontmatter, taskid
from codexd.tasks.records import Item, Progress
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(30)


def test_front_matter_fields_and_body_offset():
    raw = '+++\ntask_id = "pr-1"\ntype = "pr_review"\nstall_timeout = 60\n+++\nReview ü now.\n'.encode()
    parsed = frontmatter.parse(raw)
    assert parsed.fields == {"task_id": "pr-1", "type": "pr_review", "stall_timeout": 60}
    assert raw[parsed.body_offset :].decode() == "Review ü now.\n" == parsed.body


def test_file_without_front_matter_is_all_body():
    assert frontmatter.parse(b"Just do it.\n").fields == {}
    assert frontmatter.parse(b"\xef\xbb\xbfJust do it.\n").body_offset == 3


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"+++\ntask_id = 'x'\nDo it.\n", "never closed"),
        (b"+++\nx = = 1\n+++\nDo it.\n", "not valid TOML"),
        (b"+++\ncolour = 'red'\n+++\nDo it.\n", r"unknown front matter key\(s\) colour"),
        (b"+++\ntask_id = 5\n+++\nDo it.\n", "task_id must be a string"),
        (b"+++\ntask_id = '-x'\n+++\nDo it.\n", "invalid task id"),
        (b"+++\nstall_timeout = 0\n+++\nDo it.\n", "greater than 0"),
        (b"+++\nstall_timeout = true\n+++\nDo it.\n", "greater than 0"),
        (b"+++\nstall_timeout = nan\n+++\nDo it.\n", "greater than 0"),
        (b"+++\nnotify_urls = 'json://x'\n+++\nDo it.\n", "notify_urls must be a list of strings"),
        (b"+++\nnotify_urls = ['hunter2']\n+++\nDo it.\n", r"entry 1 is not an apprise URL \(service"),
        (b"+++\nnotify_tags = ['o p']\n+++\nDo it.\n", "'o p' is not a tag"),
        (b"+++\n+++\n  \n", "no instructions"),
        (b"\xff\xfe", "not UTF-8"),
        (b"x" * (frontmatter.MAX_BYTES + 1), "1 MiB"),
        (b"+++\na = " + b"[" * 5000 + b"\n+++\nDo it.\n", "front matter"),
    ],
)
def test_bad_instruction_files_say_why(raw, reason):
    with pytest.raises(InvalidInput, match=reason):
        frontmatter.parse(raw)


@given(st.binary(max_size=2000))
def test_any_bytes_are_parsed_or_refused_with_a_reason(raw):
    try:
        parsed = frontmatter.parse(raw)
    except InvalidInput as exc:
        assert str(exc)
    else:
        assert parsed.body.strip()


@given(st.dictionaries(st.sampled_from(["task_id", "type", "cwd"]), st.text(min_size=1, max_size=40)))
def test_rendered_front_matter_reads_back(fields):
    fields = {k: v for k, v in fields.items() if k != "task_id" or taskid.is_valid(v)}
    assert frontmatter.parse(frontmatter.render(fields, "Do it.\n")).fields == fields


def test_task_ids():
    assert taskid.is_valid("codex-pr-review-2025-10-31")
    for bad in ("", "-x", ".x", "a/b", "a" * 129, "a b", "x\n"):
        assert not taskid.is_valid(bad)
    assert taskid.from_name("Review PRs!.md") == "Review-PRs"
    assert taskid.from_name("...md") == "task"
    assert taskid.unique("t", {"t", "t-2"}.__contains__) == "t-3"


def event(kind, **fields):
    return {"type": kind, **fields}


def command(kind, cmd, **extra):
    return event(kind, item={"type": "command_execution", "command": cmd, **extra})


def test_events_become_human_lines():
    p = Progress()
    assert apply_event(p, event("thread.started", thread_id="t1")).thread_id == "t1"
    assert apply_event(p, command("item.started", "/bin/bash -lc 'gh pr diff 602'")).lines == (
        "Running: gh pr diff 602",
    )
    done = apply_event(p, command("item.completed", "/bin/bash -lc 'make'", exit_code=2))
    assert done.lines == ("Failed (exit 2): make",)
    change = event(
        "item.completed", item={"type": "file_change", "changes": [{"path": "a.py", "kind": "add"}]}
    )
    assert apply_event(p, change).lines == ("Files changed: add a.py",)
    failed = apply_event(p, event("turn.failed", error={"message": "boom"}))
    assert failed.lines == ("Turn failed: boom",)
    assert apply_event(p, event("item.completed", item={"type": "reasoning", "text": "hmm"})).lines == ()


def test_retry_chatter_is_not_progress():
    update = apply_event(Progress(), event("error", message="Reconnecting... 2/5 (stream disconnected)"))
    assert update.chatter and update.lines == ()
    assert apply_event(Progress(), event("error", message="quota exceeded")).lines == (
        "Error: quota exceeded",
    )


def test_the_plan_gives_progress_until_reports_arrive():
    todo = event(
        "item.updated",
        item={
            "type": "todo_list",
            "items": [
                {"text": "PR 1", "completed": True},
                {"text": "PR 2", "completed": False},
                {"text": "PR 3", "completed": False},
            ],
        },
    )
    planned = apply_event(Progress(), todo).progress
    assert (planned.total, planned.completed, planned.current, planned.percentage) == (3, 1, "PR 2", 33.3)
    reported = apply_report(planned, {"total": 19}).progress
    assert (reported.total, reported.completed, reported.source) == (19, 0, "reports")
    assert apply_event(reported, todo).progress == reported  # explicit reports win


def test_reports_count_done_items_with_outcomes():
    p = apply_report(Progress(), {"total": 2}).progress
    p = apply_report(p, {"current": "#602 - crossterm"}).progress
    update = apply_report(p, {"done": "#602 - crossterm", "outcome": "approved"})
    assert update.lines == ("Done (1/2): #602 - crossterm [approved]",)
    assert update.progress.items == (Item("#602 - crossterm", "approved"),)
    assert update.progress.current is None and update.progress.percentage == 50.0


def test_shown_command_unwraps_the_shell():
    assert shown_command("/bin/bash -lc 'echo '\\''hi'\\'''") == "echo 'hi'"
    assert shown_command('/bin/bash -c "a && b"') == "a && b"
    assert shown_command("python x.py") == "python x.py"


def lines(*events):
    return [json.dumps(e).encode() + b"\n" for e in events]


@pytest.mark.parametrize(
    ("code", "events", "stderr", "state", "reason"),
    [
        (0, [event("turn.started"), event("turn.completed")], [], TaskState.COMPLETED, None),
        (None, [event("turn.completed")], [], TaskState.COMPLETED, None),
        (1, [event("turn.failed", error={"message": "rate limited"})], [], TaskState.FAILED, "rate limited"),
        (
            1,
            [event("error", message="Reconnecting... 1/5"), event("error", message="stream closed")],
            [],
            TaskState.FAILED,
            "code 1: stream closed",
        ),
        (2, [], ["", "Error: not logged in"], TaskState.FAILED, "not logged in"),
        (-9, [event("turn.started")], [], TaskState.FAILED, "killed by SIGKILL"),
        (0, [event("turn.completed"), event("turn.started")], [], TaskState.FAILED, "without finishing"),
        (None, [b"not json"], [], TaskState.FAILED, "while no daemon was watching"),
    ],
)
def test_outcome_has_the_real_reason(code, events, stderr, state, reason):
    raw = [e if isinstance(e, bytes) else json.dumps(e).encode() for e in events]
    decided, error = outcome.decide(code, outcome.summarize(raw), stderr)
    assert decided == state
    assert (error is None) if reason is None else (reason in error)
