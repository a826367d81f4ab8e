"""The last lines of a file, read backwards from its end: a 1 GB log costs one block.

Linear in what is read, however long the lines: blocks are gathered in a list (each
counted once) and joined once. Callers that need only the end of the last lines (the
reason in stderr) bound the read; views cut a long line to its start and say so.
"""

from __future__ import annotations

import os

BLOCK = 64 * 1024
MAX_BLOCK = 8 << 20  # blocks grow up to this: a 100 MB line is a few reads, not thousands
REASON_BYTES = 16 * 1024  # enough of stderr's end for the reason a run failed
SHOWN_CHARS = 4000  # of one line in progress views: longer ones are cut with a marker
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

    `max_bytes` bounds what is read (the first line shown may then start with CUT_START);
    `width` cuts each line to its first `width` bytes, saying how many were left out."""
    if n <= 0:
        return []
    data, whole = _read_back(path, n, end, block, max_bytes)
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()  # the newline that ends the file (or nothing at all)
    first_cut = not whole and len(lines) <= n
    shown = [shorten(line, width) for line in lines[-n:]]
    if first_cut:
        shown[0] = CUT_START + shown[0]
    return shown


def _read_back(
    path: str | os.PathLike[str], n: int, end: int | None, block: int, max_bytes: int | None
) -> tuple[bytes, bool]:
    """The bytes before `end` holding its last `n` lines, and whether the first of them is whole."""
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed just below; FileNotFoundError is an answer)
    except FileNotFoundError:
        return b"", True
    with f:
        size = f.seek(0, os.SEEK_END)
        pos = size if end is None else min(end, size)
        floor = 0 if max_bytes is None else max(0, pos - max_bytes)
        blocks: list[bytes] = []
        newlines = 0
        while pos > floor and newlines <= n:
            step = min(block, pos - floor)
            pos -= step
            f.seek(pos)
            blocks.append(f.read(step))
            newlines += blocks[-1].count(b"\n")
            block = min(block * 2, MAX_BLOCK)
    return b"".join(reversed(blocks)), pos == 0 or newlines > n


def tail_bytes(path: str | os.PathLike[str], max_bytes: int, start: int = 0, end: int | None = None) -> bytes:
    """At most the last `max_bytes` of `path` between `start` and `end` (b"" if it is missing)."""
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed just below; FileNotFoundError is an answer)
    except FileNotFoundError:
        return b""
    with f:
        size = f.seek(0, os.SEEK_END)
        stop = size if end is None else min(end, size)
        begin = max(start, stop - max_bytes)
        if begin >= stop:
            return b""
        f.seek(begin)
        return f.read(stop - begin)


def shorten(line: bytes, width: int | None) -> str:
    """The line as text; past `width` bytes, its start and how much was cut."""
    if width is None or len(line) <= width:
        return line.decode("utf-8", "replace")
    head = line[:width].decode("utf-8", "ignore")  # a character split at the cut is dropped
    return f"{head}… [{len(line) - width} bytes cut]"


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

    def _add(self, piece: bytes) -> None:
        self._size += len(piece)
        if self.width is not None:
            piece = piece[: max(0, self.width - self._kept)]
        if piece:
            self._parts.append(piece)
            self._kept += len(piece)

    def _finish(self) -> str:
        head = b"".join(self._parts)
        cut = self._size - len(head)
        self._parts, self._kept, self._size = [], 0, 0
        if not cut:
            return head.decode("utf-8", "replace")
        return f"{head.decode('utf-8', 'ignore')}… [{cut} bytes cut]"
