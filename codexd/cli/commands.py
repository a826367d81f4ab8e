"""The command line: parse arguments, call the API, format the result. One error boundary.

Heavy modules (settings, the daemon, the dashboard) are imported inside the commands that
need them, so `status`, `list`, `logs`, `results`, `wait` and `progress` start fast.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from codexd import api, fields
from codexd.config import limits
from codexd.errors import EXIT_FAILURE, EXIT_USAGE, BrokenRecord, CodexdError, ConfigError, InvalidInput
from codexd.notify.redact import redact
from codexd.present import views
from codexd.tasks import store, taskid


def _tasks(ctx: click.Context) -> api.Tasks:
    """The tasks folder, found on first use so that `config check` can report a broken file."""
    root = ctx.find_root()
    if "tasks" not in root.meta:
        root.meta["tasks"] = api.Tasks(config=root.meta["config"])
    tasks: api.Tasks = root.meta["tasks"]
    return tasks


if TYPE_CHECKING:  # generic from click 8.2 on; the pyproject allows 8.1
    _FloatType = click.ParamType[float, Any]
    _IntType = click.ParamType[int, Any]
else:
    _FloatType = _IntType = click.ParamType


class Seconds(_FloatType):
    """Every duration on the command line: a finite number of seconds from 0 to a year."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not limits.is_duration(number):
            self.fail(f"{value!r} is not a number of seconds from 0 to {limits.MAX_SECONDS}", param, ctx)
        return number


class Count(_IntType):
    """A count on the command line (`-n`, `--total`): a whole number from 0, in ASCII digits."""

    name = "count"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()):
            self.fail(f"{value!r} is not a whole number from 0 (like 20)", param, ctx)
        return int(text)


SECONDS = Seconds()
COUNT = Count()


def _confirm_timeout(default: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--timeout`: how long a command waits for the daemon to carry out its request."""
    return click.option(
        "--timeout",
        type=SECONDS,
        default=default,
        show_default=True,
        help="Seconds to wait for the daemon to confirm.",
    )


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


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
@click.pass_context
def start(ctx: click.Context, source: str, task_id: str | None, kind: str | None, cwd: str | None) -> None:
    """Submit a task; prints its id alone on stdout."""
    raw, name = _read_instructions(source)
    tasks = _tasks(ctx)
    new_id = tasks.submit(raw, name, task_id=task_id, type=kind, cwd=cwd)
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
    if as_json:
        _print_list_json(_tasks(ctx))
        return
    broken: list[BrokenRecord] = []
    found = _tasks(ctx).list(broken)
    _say_broken(broken)
    if found:
        click.echo(views.task_table(found))
    else:
        click.echo(f"no tasks in {_tasks(ctx).root}", err=True)


def _say_broken(broken: list[BrokenRecord]) -> None:
    """One line each for the tasks left out: the command goes on with the others."""
    for exc in broken:
        click.echo(f"codexd: {redact(str(exc))}; left out", err=True)


def _print_list_json(tasks: api.Tasks) -> None:
    from codexd.tasks import listing

    data = listing.json_array(listing.named_status_files(str(tasks.root)))
    if data is None:  # a status file not in the daemon's own format: parse them all
        broken: list[BrokenRecord] = []
        found = tasks.list(broken)
        _say_broken(broken)
        _print_json(found)
        return
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print status.json.")
@click.pass_context
def status(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """One task's status."""
    data = _tasks(ctx).status_dict(task_id)
    _print_json(data) if as_json else click.echo(views.task_details(data))


@cli.command()
@click.argument("task_id")
@click.option("-n", "lines", type=COUNT, help="Only the last N lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the task ends.")
@click.option("--raw", is_flag=True, help="Codex's raw events (events.jsonl) instead of progress.log.")
@click.pass_context
def logs(ctx: click.Context, task_id: str, lines: int | None, follow: bool, raw: bool) -> None:
    """A task's progress log."""
    out = sys.stdout.buffer
    chunks = api.log_chunks(_tasks(ctx), task_id, raw, lines, follow)
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
@click.argument("task_id")
@click.pass_context
def results(ctx: click.Context, task_id: str) -> int:
    """A task's results.json."""
    found = _tasks(ctx).results(task_id)
    if found is None:
        state = _tasks(ctx).status(task_id).status.value
        click.echo(
            f"codexd: task {task_id} has no results yet ({state}); `codexd wait {task_id}` waits for it",
            err=True,
        )
        return EXIT_FAILURE
    _print_json(found)
    return 0


def _write_out(text: str, output: Path | None) -> None:
    """stdout, or a file written whole (temp file and rename), never half."""
    if output is None:
        click.echo(text, nl=False)
        return
    store.write_output(output, text.encode())
    click.echo(f"wrote {output}", err=True)


def _output_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-o",
        "--output",
        type=click.Path(path_type=Path),
        help="Write to FILE instead of stdout.",
    )(fn)


@cli.command()
@click.argument("task_id", required=False)
@click.option("--raw", is_flag=True, help="Open the task's raw Codex events (events.jsonl).")
@click.pass_context
def monitor(ctx: click.Context, task_id: str | None, raw: bool) -> None:
    """The live dashboard: all tasks, or one task with its progress and log."""
    tasks = _tasks(ctx)
    if task_id is not None:
        tasks.status_dict(task_id)  # an unknown id gets one line and exit 2, not a screen
    elif raw:
        raise InvalidInput("--raw shows one task's events: codexd monitor ID --raw")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InvalidInput("codexd monitor needs a terminal; use `codexd status` or `codexd logs` in scripts")
    from codexd.cli.dashboard import Dashboard

    Dashboard(tasks, task_id, raw).run()


@cli.command()
@click.argument("task_id")
@click.option(
    "--format",
    "form",
    type=click.Choice(["markdown", "json", "html"]),
    default="markdown",
    show_default=True,
    help="markdown fits a PR comment; html is one self-contained file.",
)
@_output_option
@click.pass_context
def report(ctx: click.Context, task_id: str, form: str, output: Path | None) -> None:
    """A task's report: outcome, timing, counts, items, summary, artifacts, errors and restarts."""
    from codexd.present import reports

    _write_out(reports.render(_tasks(ctx).report(task_id), form), output)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        example = "2025-10-31 or 2025-10-31T12:00:00Z"
        raise InvalidInput(f"--since {text!r} is not a date: use {example}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@cli.command()
@click.option("--tasks", "task_ids", metavar="ID,ID,...", help="The tasks to aggregate.")
@click.option("--all", "every", is_flag=True, help="Every task in the tasks folder.")
@click.option("--since", metavar="DATE", help="Only tasks created on or after DATE (2025-10-31, or a time).")
@click.option(
    "--format", "form", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True
)
@_output_option
@click.pass_context
def aggregate(
    ctx: click.Context,
    task_ids: str | None,
    every: bool,
    since: str | None,
    form: str,
    output: Path | None,
) -> None:
    """Totals across tasks (by status and by outcome), then one section per task."""
    from codexd.present import reports

    if bool(task_ids) == every:
        raise InvalidInput("aggregate takes either --tasks ID,ID,... or --all")
    ids = None if every else [t.strip() for t in str(task_ids).split(",") if t.strip()]
    broken: list[BrokenRecord] = []
    total = _tasks(ctx).aggregate(ids, _since(since), broken)
    _say_broken(broken)
    _write_out(reports.render_aggregate(total, form), output)


@cli.command()
@click.argument("task_id")
@click.option("--timeout", type=SECONDS, metavar="SECONDS", help="Give up after this long (exit 124).")
@click.pass_context
def wait(ctx: click.Context, task_id: str, timeout: float | None) -> int:
    """Block until the task ends; exit 0 if it completed, 1 if it failed or was cancelled."""
    final = _tasks(ctx).wait(task_id, timeout)
    click.echo(f"{task_id} {final.status.value}" + (f": {final.error}" if final.error else ""))
    return 0 if final.status.value == "completed" else EXIT_FAILURE


@cli.command()
@click.argument("task_id")
@_confirm_timeout(30.0)
@click.pass_context
def stop(ctx: click.Context, task_id: str, timeout: float) -> int:
    """Cancel a task: its whole process tree ends and its status becomes cancelled."""
    tasks = _tasks(ctx)
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
@click.argument("task_id")
@_confirm_timeout(60.0)
@click.pass_context
def restart(ctx: click.Context, task_id: str, timeout: float) -> None:
    """Kill a running or stalled task's whole tree and resume its Codex session now."""
    tasks = _tasks(ctx)
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
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_context
def health(ctx: click.Context, as_json: bool) -> int:
    """Run one health check now and print what it found (exit 1 if anything is wrong)."""
    from codexd.config import settings
    from codexd.daemon import checkup

    loaded, _ = settings.load(ctx.meta["config"])
    tasks = api.Tasks(loaded.tasks_dir)
    found = checkup.run(loaded.tasks_dir, loaded.health, datetime.now(UTC)).to_dict()
    last = tasks.last_health_check()
    found["daemon"] = {"pid": tasks.daemon_pid(), "last_check": fields.text((last or {}).get("at"))}
    if as_json:
        _print_json(found)
    else:
        click.echo(views.health_report(found))
    return 0 if found["ok"] and found["daemon"]["pid"] else EXIT_FAILURE


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
    task_dir = _tasks(ctx).store.dir(taskid.check(task_id)) if task_id else api.task_dir_from_env()
    if task_dir is None:
        raise InvalidInput(
            "codexd progress runs inside a task (CODEXD_TASK_DIR is not set); from outside, pass --task ID"
        )
    if task_id:
        _tasks(ctx).status(task_id)
    for report in ({"total": total}, {"done": done, "outcome": outcome}, {"current": current}):
        first = next(iter(report.values()))
        if first is not None:
            api.report_progress(task_dir, {k: v for k, v in report.items() if v is not None})


@cli.group()
def notify() -> None:
    """Notification URLs: try them, and see the notices waiting to be delivered."""


@notify.command(name="test")
@click.option("--url", "urls", multiple=True, metavar="URL", help="Try this apprise URL (repeatable).")
@click.pass_context
def notify_test(ctx: click.Context, urls: tuple[str, ...]) -> int:
    """Send a test notice to every configured URL (exit 1 if any failed)."""
    import socket

    from codexd.config import settings
    from codexd.notify import endpoints, notices

    loaded, path = settings.load(ctx.meta["config"])
    entries = list(urls) or [u.get_secret_value() for u in loaded.notify.urls]
    if not entries:
        raise CodexdError(f"no notification URLs: add notify.urls to {path} (see the README) or pass --url")
    settings.keep_secret(entries)
    notice = notices.test_notice(socket.gethostname(), list(loaded.notify.events))
    failed = 0
    for entry in entries:
        endpoint = endpoints.parse(entry)
        sent = endpoints.send(
            endpoint.url, notice.title, notice.text, notice.markdown, notice.kind, loaded.notify.timeout
        )
        click.echo(
            f"ok    {endpoint.shown}" if sent.error is None else f"FAIL  {endpoint.shown}: {sent.error}"
        )
        failed += sent.error is not None
    return EXIT_FAILURE if failed else 0


@notify.command(name="outbox")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@click.pass_context
def notify_outbox(ctx: click.Context, as_json: bool) -> None:
    """Notices waiting to be delivered, and those given up on."""
    from codexd.notify.outbox import Outbox

    box = Outbox(_tasks(ctx).root)
    broken: list[str] = []
    found = views.outbox_entries([d.to_dict() for d in box.pending(broken)], box.failed())
    for line in broken:
        click.echo(f"codexd: {redact(line)}; left out", err=True)
    if as_json:
        _print_json(found)
    elif found:
        click.echo(views.outbox_table(found))
    else:
        click.echo("no notices waiting or given up")


@cli.group()
def service() -> None:
    """Run the daemon as a systemd user service or a launchd agent."""


def _manager_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--launchd", is_flag=True, help="A launchd agent (the default on macOS).")(fn)
    return click.option("--systemd", is_flag=True, help="A systemd user unit (the default elsewhere).")(fn)


def _service(ctx: click.Context, systemd: bool, launchd: bool) -> Any:
    from codexd.cli import service
    from codexd.config import paths, settings

    if systemd and launchd:
        raise InvalidInput("choose one of --systemd and --launchd")
    manager = "systemd" if systemd else "launchd" if launchd else None
    loaded, _ = settings.load(ctx.meta["config"])
    path, named = paths.locate_config(ctx.meta["config"])
    chosen = manager or service.default_manager()
    return service.plan(chosen, path if named else None, loaded.codex.command[0], loaded.daemon.stop_timeout)


@service.command(name="install")
@_manager_option
@click.option("--no-start", is_flag=True, help="Only write the file; do not enable or start it.")
@click.pass_context
def service_install(ctx: click.Context, systemd: bool, launchd: bool, no_start: bool) -> None:
    """Write the unit (or agent) with absolute paths, then enable and start it."""
    from codexd.cli import service as service_module

    unit = _service(ctx, systemd, launchd)
    for line in service_module.install(unit, start=not no_start):
        click.echo(line)
    if unit.manager == "systemd":
        hint = service_module.linger_hint()
        if hint:
            click.echo(hint)
    click.echo(f"logs: {views.service_logs(unit.manager, str(service_module.logs_dir()))}")


@service.command(name="uninstall")
@_manager_option
@click.pass_context
def service_uninstall(ctx: click.Context, systemd: bool, launchd: bool) -> None:
    """Stop and disable the service, and remove its file (running tasks go on)."""
    from codexd.cli import service as service_module

    for line in service_module.uninstall(_service(ctx, systemd, launchd)):
        click.echo(line)


@service.command(name="status")
@_manager_option
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
@click.pass_context
def service_status(ctx: click.Context, systemd: bool, launchd: bool, as_json: bool) -> int:
    """Installed, enabled, running, and the daemon's own view (exit 1 if it is not running)."""
    from codexd.cli import service as service_module

    unit = _service(ctx, systemd, launchd)
    tasks = _tasks(ctx)
    found = {
        "manager": unit.manager,
        "file": str(unit.file),
        "installed": unit.installed,
        "current": unit.current,
        **service_module.manager_state(unit),
        "daemon": {"pid": tasks.daemon_pid(), "tasks_running": sum(1 for t in tasks.list() if t.get("pid"))},
        "logs": views.service_logs(unit.manager, str(service_module.logs_dir())),
    }
    _print_json(found) if as_json else click.echo(views.service_report(found))
    return 0 if found["installed"] and found["daemon"]["pid"] else EXIT_FAILURE


@cli.group()
def config() -> None:
    """The effective settings, and their validation."""


@config.command()
@click.pass_context
def show(ctx: click.Context) -> None:
    """Print the effective settings as JSON (secrets masked)."""
    from codexd.config import settings

    loaded, path = settings.load(ctx.meta["config"])
    _print_json({"config_file": str(path), **settings.shown(loaded)})


@config.command()
@click.pass_context
def check(ctx: click.Context) -> int:
    """Validate the settings: one line per problem, exit 2 if there are any."""
    from codexd.config import settings
    from codexd.notify.endpoints import judge

    try:
        loaded, path = settings.load(ctx.meta["config"])
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"codexd: {problem}", err=True)
        return EXIT_USAGE
    judged = judge([u.get_secret_value() for u in loaded.notify.urls])
    unusable = [problem for _, problem in judged if problem is not None]
    for found in unusable:
        where = "warning: notify.urls" if found.platform else "codexd: notify.urls"
        click.echo(f"{where}: {found.line()}", err=True)
    if any(not p.platform for p in unusable):
        return EXIT_USAGE
    click.echo(f"settings OK ({path})")
    return 0


@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> int:
    """Check codex, settings and folders, and say what to fix."""
    from codexd.cli import doctor as doctor_module

    failures = 0
    for check_result in doctor_module.run(ctx.meta["config"]):
        click.echo(check_result.line())
        failures += not check_result.ok
    return EXIT_FAILURE if failures else 0


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
