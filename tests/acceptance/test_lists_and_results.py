"""What `list`, `status`, `report` and the notices say about tasks: waiting in the spool,
results that do not fit their type's schema, the tasks folder read."""

from __future__ import annotations

import json
import subprocess

import pytest

from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState
from tests.conftest import CODEXD, wait_for
from tests.fake_model import Call, Say

# every field the daemon writes
SCHEMA_KEYS = set(TaskStatus("t", "generic", TaskState.QUEUED, "x", "x", "x").to_dict())


def test_a_task_waiting_in_the_spool_is_listed_queued_with_every_field(env):
    env.write("review.md", '+++\ntype = "pr_review"\n+++\nReview the PRs.\n')
    assert env.codexd("start", "--instructions", "review.md", "--task-id", "waiting").returncode == 0
    env.spool.joinpath("dropped.md").write_text("Dropped by hand.\n")

    listed = env.codexd("list", "--json")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert {r["task_id"]: r["status"] for r in records} == {"waiting": "queued", "dropped": "queued"}
    assert all(set(r) == SCHEMA_KEYS for r in records)

    table = env.codexd("list")
    assert "waiting" in table.stdout and "dropped" in table.stdout and "queued" in table.stdout

    shown = env.codexd("status", "waiting", "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert set(record) == SCHEMA_KEYS
    assert record["exit_code"] is None and record["pid"] is None and record["type"] == "pr_review"
    assert record["progress"]["items"] == [] and record["progress"]["completed"] == 0
    assert record == next(r for r in records if r["task_id"] == "waiting")  # one record, one place
    assert json.loads(env.codexd("status", "dropped", "--json").stdout)["status"] == "queued"


@pytest.mark.parametrize(
    "front",
    [
        'stall_timeout = "soon"',
        "stall_timeout = [1]",
        'task_id = "../escape"',
        "task_id = 7",
        'type = ["x"]',
        'cwd = ["x"]',
        "+++ not toml",
    ],
)
def test_a_hostile_file_waiting_in_the_spool_is_listed_by_its_name(env, front):
    """What `list` shows of a file no daemon has taken in yet is read, never trusted: the
    daemon will refuse it, saying why; until then it is listed by its file name."""
    env.spool.mkdir(mode=0o700, exist_ok=True)
    env.spool.joinpath("odd.md").write_text(f"+++\n{front}\n+++\nDo it.\n")
    listed = env.codexd("list", "--json")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert [r["task_id"] for r in json.loads(listed.stdout)] == ["odd"]
    shown = env.codexd("status", "odd", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "queued", shown.stderr


UNFIT = "I reviewed them all; they look fine."
MIXED = json.dumps(
    {
        "summary": "Reviewed 2 PRs",
        "prs": [
            {"number": 602, "title": "crossterm upgrade", "verdict": "changes_requested", "summary": "x"},
            {"number": 626, "title": "toml upgrade", "verdict": "approved", "summary": "fine"},
        ],
    }
)
SCENARIOS = {
    "unfit": [Say(UNFIT)],
    "mixed": [
        Call(
            "codexd progress --total 3 && codexd progress --done '#602 - crossterm' --outcome commented"
            " && codexd progress --done 'docs typo' --outcome done"
        ),
        Say(MIXED),
    ],
}


def run_to_end(env, model_world, daemon, scenario: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    """A pr_review task of `scenario`, run by a daemon; its id and what `codexd wait` said."""
    model_world(SCENARIOS)
    daemon()
    path = env.write(f"{scenario}.md", f'+++\ntype = "pr_review"\n+++\nSCENARIO: {scenario}\nReview.\n')
    done = env.codexd("start", "--instructions", str(path))
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    return task_id, env.codexd("wait", task_id, "--timeout", "60", timeout=70)


@pytest.mark.codex
@pytest.mark.timeout(90)
def test_results_that_do_not_fit_the_schema_fail_the_task_flagged_everywhere(env, model_world, daemon):
    task_id, waited = run_to_end(env, model_world, daemon, "unfit")
    flag = "⚠️ results did not match the pr_review schema: the final message is not a JSON object"
    assert waited.returncode == 1 and flag in waited.stdout  # a script's `wait` sees it failed
    status = env.status(task_id)
    assert status["status"] == "failed" and status["error"] == flag
    results = json.loads(env.codexd("results", task_id).stdout)
    assert results["summary"] == UNFIT and results["parse_error"] == flag
    assert flag in env.codexd("status", task_id).stdout
    assert f"{task_id}: {flag}" in env.codexd("list").stdout
    assert flag.replace("_", "\\_") in env.codexd("report", task_id).stdout  # Markdown-escaped
    assert json.loads(env.codexd("report", task_id, "--format", "json").stdout)["error"] == flag
    assert flag in (env.tasks / task_id / "progress.log").read_text()


@pytest.mark.codex
@pytest.mark.timeout(90)
def test_reported_items_and_the_final_verdicts_are_one_list_and_the_counts_follow(env, model_world, daemon):
    task_id, waited = run_to_end(env, model_world, daemon, "mixed")
    assert waited.returncode == 0, waited.stdout
    status = env.status(task_id)
    assert status["progress"]["items"] == [
        {"title": "#602 - crossterm upgrade", "outcome": "changes_requested"},  # the final verdict wins
        {"title": "docs typo", "outcome": "done"},  # reported only: it happened
        {"title": "#626 - toml upgrade", "outcome": "approved"},  # in the final JSON only
    ]
    counts = {"approved": 1, "changes_requested": 1, "commented": 0, "done": 1}
    assert status["results"] == counts
    assert status["progress"]["completed"] == 3 and status["progress"]["total"] == 3
    results = json.loads(env.codexd("results", task_id).stdout)
    assert {k: results[k] for k in counts} == counts and "parse_error" not in results


def test_list_status_and_doctor_say_which_tasks_folder_they_read_when_not_the_default(env, tmp_path):
    env.write("t.md", "Do it.\n")
    env.codexd("start", "--instructions", "t.md", "--task-id", "t1")
    note = f"codexd: tasks in {env.tasks}\n"
    for args in (["list"], ["list", "--json"], ["status", "t1"], ["status", "t1", "--json"]):
        done = env.codexd(*args)
        assert done.returncode == 0 and done.stderr == note, (args, done.stderr)
    assert json.loads(env.codexd("list", "--json").stdout)[0]["task_id"] == "t1"  # stdout: the JSON alone
    assert note in env.codexd("doctor").stderr

    # a relative tasks_dir is read from the current folder: from a subfolder, it says where it looked
    del env.vars["CODEXD_TASKS_DIR"]
    (tmp_path / "config.toml").write_text('tasks_dir = ".ai/codex-tasks"\n')
    (tmp_path / "sub").mkdir()
    done = subprocess.run(
        [*CODEXD, "list"], env=env.vars, cwd=tmp_path / "sub", capture_output=True, text=True, check=False
    )
    looked = tmp_path / "sub" / ".ai" / "codex-tasks"
    assert done.stderr.splitlines()[0] == f"codexd: tasks in {looked}"

    env.set(XDG_STATE_HOME=str(tmp_path / "state"))  # the default folder: nothing said
    (tmp_path / "config.toml").write_text("")
    assert not any(line.startswith("codexd: tasks in") for line in env.codexd("list").stderr.splitlines())
    assert env.codexd("list", "--json").stderr == ""


def test_shell_completion_scripts_and_answers(env):
    for shell in ("bash", "zsh", "fish"):
        done = env.codexd("completion", shell)
        assert done.returncode == 0 and f"_CODEXD_COMPLETE={shell}_complete" in done.stdout, done.stderr
    assert env.codexd("completion", "tcsh").returncode == 2
    env.set(_CODEXD_COMPLETE="bash_complete", COMP_WORDS="codexd li", COMP_CWORD="1")
    assert env.codexd().stdout.splitlines() == ["plain,list"]  # what the bash script asks codexd


def test_a_cancelled_pr_review_has_no_parse_error(env, daemon):
    env.set(CODEXD_CODEX__COMMAND='["/bin/sh", "-c", "sleep 120"]')
    daemon()
    text = b'+++\ntype = "pr_review"\ntask_id = "halted"\n+++\nReview.\n'
    assert env.codexd("start", "--instructions", "-", input=text).returncode == 0
    wait_for(lambda: env.status("halted")["status"] == "in_progress", 10, "the task to run")
    assert env.codexd("stop", "halted").stdout == "halted cancelled\n"
    assert env.status("halted")["error"] is None  # it had no final message to hold to the schema
    assert "parse_error" not in json.loads(env.codexd("results", "halted").stdout)
    assert "⚠️" not in env.codexd("list").stdout + env.codexd("status", "halted").stdout


def test_shell_completion_offers_the_task_ids(env):
    for task_id in ("codex-a", "codex-b", "other"):
        (env.tasks / task_id).mkdir(parents=True)
    env.set(_CODEXD_COMPLETE="bash_complete", COMP_WORDS="codexd status co", COMP_CWORD="2")
    assert env.codexd().stdout.splitlines() == ["plain,codex-a", "plain,codex-b"]
    env.set(COMP_WORDS="codexd rm codex-a ", COMP_CWORD="3")  # rm takes several
    assert env.codexd().stdout.splitlines() == ["plain,codex-a", "plain,codex-b", "plain,other"]
    env.set(CODEXD_CONFIG=str(env.write("broken.toml", "tasks_dir = [")))  # nothing, and no error
    done = env.codexd()
    assert (done.stdout.strip(), done.stderr) == ("", "")
