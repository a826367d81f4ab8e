"""`codexd report` and `codexd aggregate`: one task's report, and totals across tasks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from codexd.cli.options import TASK_ID, output_option, say_broken, tasks_of, write_out
from codexd.errors import BrokenRecord, InvalidInput


@click.command()
@click.argument("task_id", type=TASK_ID)
@click.option(
    "--format",
    "form",
    type=click.Choice(["markdown", "json", "html"]),
    default="markdown",
    show_default=True,
    help="markdown fits a PR comment; html is one self-contained file.",
)
@output_option
@click.pass_context
def report(ctx: click.Context, task_id: str, form: str, output: Path | None) -> None:
    """A task's report: outcome, timing, counts, items, summary, artifacts, errors and restarts."""
    from codexd.present import reports

    write_out(reports.render(tasks_of(ctx).report(task_id), form), output)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        example = "2025-10-31 or 2025-10-31T12:00:00Z"
        raise InvalidInput(f"--since {text!r} is not a date: use {example}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command()
@click.option("--tasks", "task_ids", metavar="ID,ID,...", help="The tasks to aggregate.")
@click.option("--all", "every", is_flag=True, help="Every task in the tasks folder.")
@click.option("--since", metavar="DATE", help="Only tasks created on or after DATE (2025-10-31, or a time).")
@click.option(
    "--format", "form", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True
)
@output_option
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
    total = tasks_of(ctx).aggregate(ids, _since(since), broken)
    say_broken(broken)
    write_out(reports.render_aggregate(total, form), output)


COMMANDS = (report, aggregate)
