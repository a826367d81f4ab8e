"""The `codexd` command's front door.

`codexd status ID --json`, `codexd logs ID -n N` and `codexd list --json` are what
scripts and status bars call in a loop, so they are answered here with `os` and `sys`
alone, at about the cost of starting Python: status files are printed as the daemon wrote
them, which is the JSON the full command prints. The tasks folder is found by
`config.paths`, as the full command line finds it (a config file is parsed once while it is
unchanged, not at every call). Anything else, and anything out of the
ordinary (an unknown task, one still in the spool, a file the daemon did not format, a
config file in error), goes to the full command line, which handles it the same way, only later.
"""

from __future__ import annotations

import os
import sys

from codexd.config import defaultdirs, paths


def main() -> None:
    try:
        code = quick(sys.argv[1:])
    except BrokenPipeError:  # `codexd logs ID -n 5 | head -1`: the reader is gone, and that is fine
        sys.stderr.close()
        code = 0
    if code is None:
        from codexd.cli.commands import main as full_command_line

        full_command_line()
        return
    sys.exit(code)


def quick(argv: list[str]) -> int | None:
    """Exit code when answered here; None hands the call to the full command line."""
    if len(argv) == 3 and argv[0] == "status" and argv[2] == "--json":
        return _print_status(argv[1])
    # isascii: str.isdigit() is also true for '²', which int() refuses
    if len(argv) == 4 and argv[0] == "logs" and argv[2] == "-n" and argv[3].isascii() and argv[3].isdigit():
        return _print_tail(argv[1], int(argv[3]))
    if argv == ["list", "--json"]:
        return _print_list()
    return None


def _task_record(task_id: str) -> tuple[str, bytes] | None:
    """The task's folder and status.json, if that is as the daemon wrote it; else the full
    command line answers (an unknown task, one still in the spool, a broken file)."""
    root = paths.quick_tasks_dir()
    if root is None or not defaultdirs.is_task_id(task_id):
        return None
    folder = os.path.join(root, task_id)
    try:
        with open(os.path.join(folder, "status.json"), "rb") as f:
            data = f.read()
    except OSError:
        return None
    from codexd.tasks.statusfile import in_daemon_format

    return (folder, data) if in_daemon_format(data, task_id) else None


def _print_status(task_id: str) -> int | None:
    found = _task_record(task_id)
    if found is None:
        return None
    _say_where(os.path.dirname(found[0]))
    sys.stdout.buffer.write(found[1])
    sys.stdout.flush()
    return 0


def _print_tail(task_id: str, n: int) -> int | None:
    found = _task_record(task_id)
    if found is None:
        return None
    from codexd.present.shown import shown  # each command imports only what it uses
    from codexd.tailing import SHOWN_CHARS, tail_lines

    lines = tail_lines(os.path.join(found[0], "progress.log"), n, width=SHOWN_CHARS)
    if lines:  # shown(): a log written before codexd made controls visible is safe too
        sys.stdout.buffer.write(shown("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
        sys.stdout.flush()
    return 0


def _print_list() -> int | None:
    from codexd.tasks import listing

    root, spool = paths.quick_tasks_dir(), paths.quick_folder("spool_dir")
    if root is None or spool is None or not os.path.isdir(root) or listing.waiting_in_spool(spool):
        return None  # a task waiting in the spool is read by the full command line
    data = listing.json_array(listing.named_status_files(root))
    if data is None:
        return None
    _say_where(root)
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def folder_note(root: str) -> str | None:
    """`codexd: tasks in ROOT`, for stderr, when the tasks folder read is not the default one:
    a relative tasks_dir is read from the current folder, and an empty list should say where it looked.
    The full command line says it too (cli/options.say_tasks_folder)."""
    return None if root == paths.default_folder("tasks_dir") else f"codexd: tasks in {root}"


def _say_where(root: str) -> None:
    """The tasks folder read, on stderr, when it is not the default (stdout stays the JSON)."""
    note = folder_note(root)
    if note:
        sys.stderr.write(note + "\n")
        sys.stderr.flush()
