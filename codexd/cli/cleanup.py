"""`codexd rm` and `codexd prune`: ended tasks' folders (and worktrees) deleted.

Each task removed is one line on stdout; each refused (not ended, unknown, a worktree git
will not remove) one line on stderr. The others are removed all the same, and the exit
code is 2 if any was refused (1 if one could not be deleted).
"""

from __future__ import annotations

import click

from codexd.cli.options import TASK_ID, say_broken, tasks_of
from codexd.errors import EXIT_FAILURE, EXIT_USAGE, BrokenRecord
from codexd.tasks.removal import Removal, parse_age

DRY_RUN = click.option("--dry-run", is_flag=True, help="Only list what would be removed.")


@click.command()
@click.argument("task_ids", metavar="ID...", type=TASK_ID, nargs=-1, required=True)
@DRY_RUN
@click.pass_context
def rm(ctx: click.Context, task_ids: tuple[str, ...], dry_run: bool) -> int:
    """Delete ended tasks' folders (and worktrees, keeping their branches)."""
    return _said(tasks_of(ctx).remove(task_ids, dry_run))


@click.command()
@click.option("--older-than", "age", required=True, metavar="DURATION", help="Like 7d, 12h, 30m, or seconds.")
@DRY_RUN
@click.pass_context
def prune(ctx: click.Context, age: str, dry_run: bool) -> int:
    """Delete every task that ended longer ago than DURATION (what `rm` would for each)."""
    tasks = tasks_of(ctx)
    broken: list[BrokenRecord] = []
    done = tasks.prune(parse_age(age), dry_run, broken)
    say_broken(broken)
    if not (done.removed or done.refused or done.failed):
        click.echo(f"nothing to prune: no task in {tasks.root} ended more than {age} ago", err=True)
    return _said(done)


def _said(done: Removal) -> int:
    for line in done.removed:
        click.echo(line)
    for line in (*done.refused, *done.failed):
        click.echo(f"codexd: {line}", err=True)
    return EXIT_USAGE if done.refused else EXIT_FAILURE if done.failed else 0


COMMANDS = (rm, prune)
