"""The commands around the tasks: `health`, `notify`, `service`, `config` and `doctor`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from codexd import api, fields
from codexd.cli.options import print_json, say_tasks_folder, tasks_of
from codexd.errors import EXIT_FAILURE, EXIT_USAGE, CodexdError, ConfigError, InvalidInput
from codexd.notify.redact import redact
from codexd.present import views


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_context
def health(ctx: click.Context, as_json: bool) -> int:
    """Run one health check now and print what it found (exit 1 if anything is wrong)."""
    from codexd.config import settings
    from codexd.daemon import checkup
    from codexd.tasks import account

    loaded, _ = settings.load(ctx.meta["config"])
    tasks = api.Tasks(loaded.tasks_dir)
    found = checkup.run(loaded.tasks_dir, loaded.health, datetime.now(UTC)).to_dict()
    last = tasks.last_health_check()
    found["daemon"] = {"pid": tasks.daemon_pid(), "last_check": fields.text((last or {}).get("at"))}
    found["ok"] = found["ok"] and found["daemon"]["pid"] is not None  # unsupervised tasks are not ok
    held = tasks.usage_limit()  # every task waits for the account's usage limit: not a fault
    found["account"] = held.to_dict() if held is not None else None
    limits = account.read(loaded.tasks_dir)
    found |= {"rate_limits": limits} if limits else {}  # the account's rate limits, when Codex gave them
    if as_json:
        print_json(found)
    else:
        click.echo(views.health_report(found))
    return 0 if found["ok"] else EXIT_FAILURE


@click.group()
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
        sent = endpoints.send(endpoint.url, notice, loaded.notify.timeout)
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

    box = Outbox(tasks_of(ctx).root)
    broken: list[str] = []
    found = views.outbox_entries([d.to_dict() for d in box.pending(broken)], box.failed())
    for line in broken:
        click.echo(f"codexd: {redact(line)}; left out", err=True)
    if as_json:
        print_json(found)
    elif found:
        click.echo(views.outbox_table(found))
    else:
        click.echo("no notices waiting or given up")


@click.group()
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
    chosen = manager or service.default_manager()
    named = paths.named_config(ctx.meta["config"])
    return service.plan(chosen, named, loaded.codex.command[0], loaded.daemon.stop_timeout)


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
    tasks = tasks_of(ctx)
    found = {
        "manager": unit.manager,
        "file": str(unit.file),
        "installed": unit.installed,
        "current": unit.current,
        **service_module.manager_state(unit),
        "daemon": {"pid": tasks.daemon_pid(), "tasks_running": sum(1 for t in tasks.list() if t.get("pid"))},
        "logs": views.service_logs(unit.manager, str(service_module.logs_dir())),
    }
    print_json(found) if as_json else click.echo(views.service_report(found))
    return 0 if found["installed"] and found["daemon"]["pid"] else EXIT_FAILURE


@click.group()
def config() -> None:
    """The effective settings, and their validation."""


@config.command()
@click.pass_context
def show(ctx: click.Context) -> None:
    """Print the effective settings as JSON (secrets masked)."""
    from codexd.config import settings

    loaded, path = settings.load(ctx.meta["config"])
    print_json({"config_file": str(path), **settings.shown(loaded)})


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


@click.command()
@click.pass_context
def doctor(ctx: click.Context) -> int:
    """Check codex, settings and folders, and say what to fix."""
    from codexd.cli import doctor as doctor_module

    say_tasks_folder(ctx)
    failures = 0
    for check_result in doctor_module.run(ctx.meta["config"]):
        click.echo(check_result.line())
        failures += not check_result.ok
    return EXIT_FAILURE if failures else 0


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script: eval "$(codexd completion bash)" (README: Shell completion)."""
    from click.shell_completion import get_completion_class

    found = get_completion_class(shell)
    assert found is not None  # click.Choice let only the shells Click knows through
    root = ctx.find_root().command
    click.echo(found(root, {}, "codexd", "_CODEXD_COMPLETE").source())


COMMANDS = (health, notify, service, config, doctor, completion)
