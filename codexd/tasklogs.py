"""A task's logs as `codexd logs` and the dashboard show them: the whole log or its last lines,
then what is appended while the task runs, in bounded memory."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from codexd import tailing
from codexd.tasks import store

if TYPE_CHECKING:
    from codexd.api import Tasks


class Following:
    """The lines appended to a file from `offset` on, whole, each cut to `width` bytes: what
    `codexd logs --follow` and the dashboard's log view show as a task's log grows."""

    def __init__(self, path: Path, offset: int, width: int | None = None):
        self.path, self.offset = path, offset
        self._lines = tailing.Splitter(width)

    def new_lines(self) -> list[str] | None:
        """The lines finished in what was appended since the last call; None if nothing was."""
        data = store.read_from(self.path, self.offset)
        if not data:
            return None
        self.offset += len(data)
        return self._lines.feed(data)

    def grown(self) -> bool:
        return bool(store.read_from(self.path, self.offset, 1))


def follow(
    path: Path, offset: int, ended: Callable[[], bool], poll: float = 0.1, width: int | None = None
) -> Iterator[str]:
    """Lines appended to `path` after `offset`, until `ended()` and nothing more is left;
    with `width`, each cut to its first `width` bytes."""
    following = Following(path, offset, width)
    while True:
        lines = following.new_lines()
        if lines is not None:
            yield from lines
        elif ended() and not following.grown():
            return
        else:
            time.sleep(poll)


def log_chunks(tasks: Tasks, task_id: str, raw: bool, n: int | None, keep_following: bool) -> Iterator[bytes]:
    """`codexd logs`: the whole log or its last `n` lines, then new lines while the task runs,
    as bytes to print. Linear in what is printed, in bounded memory: raw events are copied
    as they are, however long; progress.log lines past SHOWN_CHARS are cut."""
    tasks.status_dict(task_id)
    path = tasks.store.file(task_id, store.EVENTS if raw else store.PROGRESS)
    width = None if raw else tailing.SHOWN_CHARS
    everything, size = n is None and not keep_following, 0
    with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = 0 if everything else tailing.start_of_last(f, 20 if n is None else n, size)[0]
        yield from _text(tailing.chunks(f, start, size), width)
    if keep_following:
        lines = follow(path, size, lambda: tasks.status(task_id).is_terminal, width=width)
        yield from (f"{line}\n".encode() for line in lines)


def _text(data: Iterable[bytes], width: int | None) -> Iterator[bytes]:
    """Chunks of a log as lines to print: copied when whole lines are wanted, else cut at `width`."""
    lines, last = tailing.Splitter(width), b"\n"
    for chunk in data:
        if width is None:
            yield chunk
        elif found := lines.feed(chunk):
            yield ("\n".join(found) + "\n").encode()
        last = chunk[-1:]
    if width is None and last != b"\n":
        yield b"\n"  # the last line, still being written, ends the output
    yield from (f"{line}\n".encode() for line in lines.rest())
