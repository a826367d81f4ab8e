"""The command line: the `codexd` group, the task commands, and the one error boundary.

A command parses, calls the API and formats the result. The commands around the tasks are
in `admin` (health, notify, service, config, doctor) and `reporting` (report, aggregate);
what they share is in `options`. Heavy modules (settings, the daemon, the dashboard) are
imported inside the commands that need them, so `status`, `list`, `logs`, `results`,
`wait` and `progress` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from codexd import api, tasklogs
from codexd.cli import admin, cleanup, options, reporting
from codexd.cli.options import COUNT, SECONDS, TASK_ID, confirm_timeout, print_json, say_broken, tasks_of
from codexd.errors import EXIT_FAILURE, EXIT_USAGE, BrokenRecord, CodexdError, ConfigError, InvalidInput
from codexd.notify.redact import redact
from codexd.present import views
from codexd.tasks import taskid
from codexd.tasks.taken import MAX_PRIORITY


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config", metavar="PATH", help="Settings file (else $CODEXD_CONFIG, else the default)."
)
@click.version_option(package_name="codexd")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Run Codex CLI tasks unattended: watched, restarted when they hang, reported when done."""
    ctx.meta["config"] = config


@cli.command()
@click.option(
    "--stop-tasks", is_flag=True, help="Stop running tasks when the daemon stops (default: they go on)."
)
@click.pass_context
def daemon(ctx: click.Context, stop_tasks: bool) -> None:
    """Run the supervisor in the foreground (what a service manager starts)."""
    from codexd.config import settings
    from codexd.daemon import main as daemon_module

    loaded, _ = settings.load(ctx.meta["config"])
    daemon_module.run(loaded, ctx.meta["config"], stop_tasks=stop_tasks)


def _read_instructions(source: str) -> tuple[bytes, str]:
    """The instruction file's bytes and name; a regular file or stdin, under the size cap."""
    from codexd.tasks import intake

    if source == "-":
        return intake.read_stdin(), "task"
    path = Path(source).expanduser()
    return intake.read_instruction_file(path), path.name


@cli.command()
@click.option(
    "--instructions", "source", required=True, metavar="FILE|-", help="Instruction file, or - for stdin."
)
@click.option("--task-id", help="The task's id (default: from the file name, made unique).")
@click.option("--type", "kind", help="Task type: generic, pr_review, or one from the config.")
@click.option("--cwd", help="Folder Codex works in (default: the current folder).")
@click.option("--timeout", type=SECONDS, metavar="S", help="Wall time for the whole task; then it fails.")
@click.option("--max-tokens", type=COUNT, metavar="N", help="Tokens for the whole task; then it fails.")
@click.option("--after", metavar="ID[,ID...]", help="Start only once these tasks have completed.")
@click.option(
    "--priority",
    type=click.IntRange(-MAX_PRIORITY, MAX_PRIORITY),
    metavar="N",
    help=f"Higher starts first among queued tasks (-{MAX_PRIORITY}..{MAX_PRIORITY}, default 0).",
)
@click.option(
    "--worktree/--no-worktree",
    default=None,
    help="Run in a new git worktree of the cwd's repository, on branch codexd/<task-id>.",
)
@click.option("--base", metavar="REF", help="Where the worktree starts: a branch, tag or commit (else HEAD).")
@click.pass_context
def start(ctx: click.Context, /, source: str, **given: Any) -> None:
    """Submit a task; prints its id alone on stdout."""
    raw, name = _read_instructions(source)
    tasks = tasks_of(ctx)
    given["type"] = given.pop("kind")
    if given["after"] is not None:  # "a,b" -> ["a", "b"]; the front matter check judges each id
        given["after"] = [part.strip() for part in given["after"].split(",") if part.strip()]
    new_id = tasks.submit(raw, name, **given)
    click.echo(new_id)
    if tasks.daemon_pid() is None:
        click.echo(
            f"codexd: no daemon is running for {tasks.root}: the task waits in the spool until "
            "`codexd daemon` starts",
            err=True,
        )


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the status.json of every task.")
@click.pass_context
def list_tasks(ctx: click.Context, as_json: bool) -> None:
    """All tasks, newest first."""
    options.say_tasks_folder(ctx)
    if as_json:
        _print_list_json(tasks_of(ctx))
        return
    broken: list[BrokenRecord] = []
    found = tasks_of(ctx).list(broken)
    say_broken(broken)
    if found:
        click.echo(views.task_table(found))
    else:
        click.echo(f"no tasks in {tasks_of(ctx).root}", err=True)


def _print_list_json(tasks: api.Tasks) -> None:
    data = tasks.list_as_written()
    if data is None:  # a status file not in the daemon's own format, a task in the spool: parse them all
        broken: list[BrokenRecord] = []
        found = tasks.list(broken)
        say_broken(broken)
        print_json(found)
        return
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@cli.command()
@click.argument("task_id", type=TASK_ID)
@click.option("--json", "as_json", is_flag=True, help="Print status.json.")
@click.pass_context
def status(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """One task's status."""
    data = tasks_of(ctx).status_dict(task_id)
    options.say_tasks_folder(ctx)  # once read: an error names the folder itself
    print_json(data) if as_json else click.echo(views.task_details(data))


@cli.command()
@click.argument("task_id", type=TASK_ID)
@click.option("-n", "lines", type=COUNT, help="Only the last N lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the task ends.")
@click.option("--raw", is_flag=True, help="Codex's raw events (events.jsonl) instead of progress.log.")
@click.pass_context
def logs(ctx: click.Context, task_id: str, lines: int | None, follow: bool, raw: bool) -> None:
    """A task's progress log."""
    out = sys.stdout.buffer
    chunks = tasklogs.log_chunks(tasks_of(ctx), task_id, raw, lines, follow)
    # What the agent wrote is shown, never obeyed; raw events into a pipe or file stay byte-exact.
    for chunk in _shown_chunks(chunks) if not raw or out.isatty() else chunks:
        out.write(chunk)
        out.flush()


def _shown_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Chunks with their control characters made visible (codexd.present.shown), a character cut
    between two chunks decoded whole, bytes that are not UTF-8 shown as `\\xNN`."""
    import codecs

    from codexd.present.shown import shown

    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    for chunk in chunks:
        yield shown(decoder.decode(chunk)).encode()
    yield shown(decoder.decode(b"", final=True)).encode()


@cli.command()
@click.argument("task_id", type=TASK_ID)
@click.pass_context
def results(ctx: click.Context, task_id: str) -> int:
    """A task's results.json."""
    found = tasks_of(ctx).results(task_id)
    if found is None:
        state = tasks_of(ctx).status(task_id).status.value
        click.echo(
            f"codexd: task {task_id} has no results yet ({state}); `codexd wait {task_id}` waits for it",
            err=True,
        )
        return EXIT_FAILURE
    print_json(found)
    return 0


@cli.command()
@click.argument("task_id", type=TASK_ID, required=False)
@click.option("--raw", is_flag=True, help="Open the task's raw Codex events (events.jsonl).")
@click.pass_context
def monitor(ctx: click.Context, task_id: str | None, raw: bool) -> None:
    """The live dashboard: all tasks, or one task with its progress and log."""
    tasks = tasks_of(ctx)
    if task_id is not None:
        tasks.status_dict(task_id)  # an unknown id gets one line and exit 2, not a screen
    elif raw:
        raise InvalidInput("--raw shows one task's events: codexd monitor ID --raw")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InvalidInput("codexd monitor needs a terminal; use `codexd status` or `codexd logs` in scripts")
    from codexd.cli.dashboard import Dashboard

    Dashboard(tasks, task_id, raw).run()


@cli.command()
@click.argument("task_id", type=TASK_ID)
@click.option("--timeout", type=SECONDS, metavar="SECONDS", help="Give up after this long (exit 124).")
@click.pass_context
def wait(ctx: click.Context, task_id: str, timeout: float | None) -> int:
    """Block until the task ends; exit 0 if it completed, 1 if it failed or was cancelled."""
    final = tasks_of(ctx).wait(task_id, timeout)
    click.echo(f"{task_id} {final.status.value}" + (f": {final.error}" if final.error else ""))
    return 0 if final.status.value == "completed" else EXIT_FAILURE


@cli.command()
@click.argument("task_id", type=TASK_ID)
@confirm_timeout(30.0)
@click.pass_context
def stop(ctx: click.Context, task_id: str, timeout: float) -> int:
    """Cancel a task: its whole process tree ends and its status becomes cancelled."""
    tasks = tasks_of(ctx)
    before = tasks.request_stop(task_id)
    if before.is_terminal:
        click.echo(f"{task_id} already {before.status.value}: nothing to stop")
        return 0
    if tasks.daemon_pid() is None:
        click.echo(
            f"codexd: no daemon is running for {tasks.root}: the task will be stopped and recorded as "
            "cancelled when `codexd daemon` starts",
            err=True,
        )
        return EXIT_FAILURE
    final = tasks.wait(task_id, timeout)
    click.echo(f"{task_id} {final.status.value}")
    return 0


@cli.command()
@click.argument("task_id", type=TASK_ID)
@confirm_timeout(60.0)
@click.pass_context
def restart(ctx: click.Context, task_id: str, timeout: float) -> None:
    """Kill a running or stalled task's whole tree and resume its Codex session now."""
    tasks = tasks_of(ctx)
    before = tasks.request_restart(task_id)
    after = tasks.wait_until(
        task_id,
        lambda s: s.is_terminal or (s.restarts > before.restarts and s.pid is not None),
        "to restart",
        timeout,
    )
    if after.is_terminal:
        click.echo(f"{task_id} {after.status.value} before it could be restarted")
        return
    how = f"resumed session {after.thread_id}" if after.thread_id else "started afresh"
    click.echo(f"{task_id} restarted: {how} (pid {after.pid}, restart {after.restarts})")


@cli.command()
@click.argument("task_id", type=TASK_ID)
@click.option("--fresh", is_flag=True, help="Start over instead of resuming its Codex session.")
@click.option(
    "--max-tokens", type=COUNT, metavar="N", help="Its token budget from now on (its tokens so far count)."
)
@confirm_timeout(30.0)
@click.pass_context
def retry(ctx: click.Context, task_id: str, fresh: bool, max_tokens: int | None, timeout: float) -> int:
    """Run a failed or cancelled task again under its id, resuming its Codex session."""
    tasks = tasks_of(ctx)
    before = tasks.request_retry(task_id, fresh, max_tokens)
    thread = None if fresh else before.thread_id
    how = f"resumes Codex session {thread}" if thread else "starts afresh"
    if tasks.daemon_pid() is None:
        click.echo(
            f"codexd: no daemon is running for {tasks.root}: task {task_id} runs again ({how}) when "
            "`codexd daemon` starts",
            err=True,
        )
        return EXIT_FAILURE
    after = tasks.wait_taken(task_id, "retry-fresh" if fresh else "retry", timeout)
    if after == before:  # the daemon left it as it was (see its log)
        raise CodexdError(f"the daemon did not retry task {task_id}: the daemon's log says why")
    click.echo(f"{task_id} queued again: it {how}")
    return 0


@cli.command()
@click.option("--total", type=COUNT, help="How many items the task has.")
@click.option("--current", metavar="TEXT", help="The item being worked on now.")
@click.option("--done", metavar="TEXT", help="An item that is finished.")
@click.option(
    "--outcome",
    metavar="OUTCOME",
    help="With --done: approved, changes_requested, commented, done, failed...",
)
@click.option("--task", "task_id", metavar="ID", help="The task, when not run inside one.")
@click.pass_context
def progress(
    ctx: click.Context,
    total: int | None,
    current: str | None,
    done: str | None,
    outcome: str | None,
    task_id: str | None,
) -> None:
    """Report progress from inside a task (uses $CODEXD_TASK_DIR)."""
    if outcome is not None and done is None:
        raise InvalidInput("--outcome goes with --done: codexd progress --done TEXT --outcome OUTCOME")
    if total is None and current is None and done is None:
        raise InvalidInput("nothing to report: give --total N, --current TEXT or --done TEXT")
    task_dir = tasks_of(ctx).store.dir(taskid.check(task_id)) if task_id else api.task_dir_from_env()
    if task_dir is None:
        raise InvalidInput(
            "codexd progress runs inside a task (CODEXD_TASK_DIR is not set); from outside, pass --task ID"
        )
    if task_id:
        tasks_of(ctx).status(task_id)  # an unknown id: one line, exit 2
    api.check_reportable(task_dir)
    for report in ({"total": total}, {"done": done, "outcome": outcome}, {"current": current}):
        first = next(iter(report.values()))
        if first is not None:
            api.report_progress(task_dir, {k: v for k, v in report.items() if v is not None})


for command in (*admin.COMMANDS, *reporting.COMMANDS, *cleanup.COMMANDS):
    cli.add_command(command)


def _usage_line(exc: click.UsageError) -> str:
    where = exc.ctx.command_path if exc.ctx else "codexd"
    return f"{where}: {exc.format_message()} (see '{where} --help')"


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes one line on stderr and a documented exit code."""
    try:
        code = cli.main(args=argv, prog_name="codexd", standalone_mode=False)
    except CodexdError as exc:
        for problem in exc.problems if isinstance(exc, ConfigError) else [str(exc)]:
            click.echo(f"codexd: {redact(problem)}", err=True)  # settings: one line per problem
        code = exc.exit_code
    except click.UsageError as exc:
        click.echo(_usage_line(exc), err=True)
        code = EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"codexd: {exc.format_message()}", err=True)
        code = exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        code = 130
    except BrokenPipeError:
        sys.stderr.close()  # `codexd logs ID | head`: the reader is gone, and that is fine
        code = 0
    sys.exit(code if isinstance(code, int) else 0)
