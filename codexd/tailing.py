"""The last lines of a file, read backwards from its end: a 1 GB log costs one block.

Linear however long the lines: the start of the last lines is found by counting newlines
block by block (nothing kept), then they are read forwards in chunks. Callers that need
only the end (the reason in stderr) bound the read; views cut a long line to its start
and say how much was left out, so they hold no more than that.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # `typing` costs a quick command ~8 ms; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

BLOCK = 64 * 1024
MAX_BLOCK = 8 << 20  # blocks grow up to this: a 100 MB line is a few reads, not thousands
CHUNK = 4 << 20  # read forwards this much at a time
REASON_BYTES = 16 * 1024  # enough of stderr's end for the reason a run failed
SHOWN_CHARS = 4000  # bytes of one line in progress views: longer ones are cut with a marker
CUT_START = "[…] "  # a line whose start was not read


def tail_lines(
    path: str | os.PathLike[str],
    n: int,
    end: int | None = None,
    block: int = BLOCK,
    max_bytes: int | None = None,
    width: int | None = None,
) -> list[str]:
    """The last `n` lines of `path` (before byte `end`), not reading the whole file.

    `max_bytes` bounds what is read (the first line may then start with CUT_START);
    `width` cuts each line to its first `width` bytes, saying how many were left out."""
    if n <= 0:
        return []
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed just below; FileNotFoundError is an answer)
    except FileNotFoundError:
        return []
    with f:
        stop = _end_of(f, end)
        start, whole = start_of_last(f, n, stop, block, max_bytes)
        lines = Splitter(width)
        shown = [text for chunk in chunks(f, start, stop) for text in lines.feed(chunk)]
        shown += lines.rest()
    if shown and not whole:
        shown[0] = CUT_START + shown[0]
    return shown


def _end_of(f: BinaryIO, end: int | None) -> int:
    size = f.seek(0, os.SEEK_END)
    return size if end is None else min(end, size)


def start_of_last(
    f: BinaryIO, n: int, end: int, block: int = BLOCK, max_bytes: int | None = None
) -> tuple[int, bool]:
    """Where the last `n` lines before `end` begin, and False when `max_bytes` cut the first."""
    floor = 0 if max_bytes is None else max(0, end - max_bytes)
    if end <= floor:
        return end, True
    f.seek(end - 1)
    needed = n + (f.read(1) == b"\n")  # a newline that ends the file ends a line, it starts none
    pos = end
    while pos > floor:
        step = min(block, pos - floor)
        pos -= step
        f.seek(pos)
        data = f.read(step)
        found = data.count(b"\n")
        if found >= needed:
            cut = len(data)
            for _ in range(needed):
                cut = data.rfind(b"\n", 0, cut)
            return pos + cut + 1, True
        needed -= found
        block = min(block * 2, MAX_BLOCK)
    return floor, _starts_line(f, floor)


def _starts_line(f: BinaryIO, pos: int) -> bool:
    if pos == 0:
        return True
    f.seek(pos - 1)
    return f.read(1) == b"\n"


def chunks(f: BinaryIO, start: int, end: int, size: int = CHUNK) -> Iterator[bytes]:
    """The bytes of `f` from `start` to `end`, a chunk at a time."""
    f.seek(start)
    while start < end and (data := f.read(min(size, end - start))):
        start += len(data)
        yield data


def tail_bytes(path: str | os.PathLike[str], max_bytes: int, start: int = 0, end: int | None = None) -> bytes:
    """At most the last `max_bytes` of `path` between `start` and `end` (b"" if it is missing)."""
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed just below; FileNotFoundError is an answer)
    except FileNotFoundError:
        return b""
    with f:
        stop = _end_of(f, end)
        return b"".join(chunks(f, max(start, stop - max_bytes), stop))


def shorten(line: bytes, width: int | None) -> str:
    """The line as text; past `width` bytes, its start and how much was cut."""
    if width is None or len(line) <= width:
        return line.decode("utf-8", "replace")
    return _cut(line[:width], len(line) - width)


def _cut(head: bytes, left_out: int) -> str:
    return f"{head.decode('utf-8', 'ignore')}… [{left_out} bytes cut]"  # a split character is dropped


class Splitter:
    """Whole lines out of chunks as they come, in time linear in the chunks. With `width`,
    a line is kept only up to it (bounded memory), and shown cut with a marker."""

    def __init__(self, width: int | None = None):
        self.width = width
        self._parts: list[bytes] = []
        self._kept = 0  # bytes in _parts
        self._size = 0  # bytes of the unfinished line so far

    def feed(self, data: bytes) -> list[str]:
        pieces = data.split(b"\n")
        lines = []
        for piece in pieces[:-1]:
            self._add(piece)
            lines.append(self._finish())
        self._add(pieces[-1])
        return lines

    def rest(self) -> list[str]:
        """The last line, if it has no newline (yet)."""
        return [self._finish()] if self._size else []

    def _add(self, piece: bytes) -> None:
        self._size += len(piece)
        if self.width is not None:
            piece = piece[: max(0, self.width - self._kept)]
        if piece:
            self._parts.append(piece)
            self._kept += len(piece)

    def _finish(self) -> str:
        head = b"".join(self._parts)
        left_out = self._size - len(head)
        self._parts, self._kept, self._size = [], 0, 0
        return _cut(head, left_out) if left_out else head.decode("utf-8", "replace")
