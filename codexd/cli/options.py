"""What the commands share: the tasks folder, the number types, JSON, files written whole."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from codexd import api
from codexd.config import limits
from codexd.errors import BrokenRecord, CodexdError
from codexd.notify.redact import redact
from codexd.present.shown import json_safe
from codexd.tasks import store


def tasks_of(ctx: click.Context) -> api.Tasks:
    """The tasks folder, found on first use so that `config check` can report a broken file."""
    root = ctx.find_root()
    if "tasks" not in root.meta:
        root.meta["tasks"] = api.Tasks(config=root.meta["config"])
    tasks: api.Tasks = root.meta["tasks"]
    return tasks


def say_tasks_folder(ctx: click.Context) -> None:
    """One line on stderr naming the tasks folder read, when it is not the default (as the
    quick commands of cli/entry do)."""
    from codexd.cli.entry import folder_note

    try:
        note = folder_note(str(tasks_of(ctx).root))
    except CodexdError:  # settings in error: the command says what is wrong
        return
    if note:
        click.echo(note, err=True)


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


class TaskId(click.ParamType[str]):
    """A task id argument: the shell completes it from the task folders' names."""

    name = "task_id"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[click.shell_completion.CompletionItem]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(name) for name in task_ids(ctx.find_root().meta.get("config"), incomplete)]


def task_ids(config: str | None, prefix: str) -> list[str]:
    """The task ids in the tasks folder that start with `prefix`; none when it cannot be read
    (completion never prints an error into the user's command line)."""
    from codexd.config import paths
    from codexd.config.defaultdirs import is_task_id

    try:
        root = paths.resolve(config).tasks_dir
        names = [e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except Exception:  # a broken config or folder: nothing to offer
        return []
    return sorted(n for n in names if n.startswith(prefix) and not n.startswith(".") and is_task_id(n))


SECONDS = Seconds()
COUNT = Count()
TASK_ID = TaskId()


def confirm_timeout(default: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--timeout`: how long a command waits for the daemon to carry out its request."""
    return click.option(
        "--timeout",
        type=SECONDS,
        default=default,
        show_default=True,
        help="Seconds to wait for the daemon to confirm.",
    )


def print_json(data: Any) -> None:
    click.echo(json_safe(json.dumps(data, indent=2, ensure_ascii=False)))


def say_broken(broken: list[BrokenRecord]) -> None:
    """One line each for the tasks left out: the command goes on with the others."""
    for exc in broken:
        click.echo(f"codexd: {redact(str(exc))}; left out", err=True)


def write_out(text: str, output: Path | None) -> None:
    """stdout, or a file written whole (temp file and rename), never half."""
    if output is None:
        click.echo(text, nl=False)
        return
    store.write_output(output, text.encode())
    click.echo(f"wrote {output}", err=True)


def output_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-o",
        "--output",
        type=click.Path(path_type=Path),
        help="Write to FILE instead of stdout.",
    )(fn)
