"""Lines of a task file, of any length, in bounded memory: what the daemon follows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from codexd.tasks.files import open_read, size_of

READ_LIMIT = 1 << 20  # bytes read at a time when following a file
LINE_CAP = 256 * 1024  # bytes kept of one line: a Codex event says what it is near its start
TAIL_KEPT = 4 * 1024  # of those, from the end of a longer line (a command's exit code follows its output)
CHUNK = 256 * 1024  # bytes read at a time when scanning for lines
PENDING_KEPT = 32  # long unfinished lines whose scan is remembered (one per followed file at most)


def read_from(path: Path, offset: int, limit: int = READ_LIMIT) -> bytes:
    """Up to `limit` bytes of `path` from `offset`; b"" when there is nothing (yet)."""
    try:
        with open_read(path) as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""


class Line(NamedTuple):
    """One line of a file: whole, or a capped excerpt of it (its start and its end)."""

    head: bytes  # the line without its newline, or its first bytes when it is longer than LINE_CAP
    tail: bytes  # b"", or the last TAIL_KEPT bytes of a line longer than LINE_CAP
    end: int  # the offset just past its newline
    size: int  # its length without the newline

    @property
    def cut(self) -> int:
        """Bytes of the line that were not kept."""
        return self.size - len(self.head) - len(self.tail)


class _Assembly:
    """A line being put together from chunks; never more than LINE_CAP + TAIL_KEPT bytes held."""

    def __init__(self, start: int):
        self.start = start
        self.head = bytearray()
        self.tail = b""
        self.size = 0

    def add(self, piece: bytes) -> None:
        room = LINE_CAP - len(self.head)
        if room > 0:
            self.head += piece[:room]
        if len(piece) > room:
            self.tail = (self.tail + piece[max(room, len(piece) - TAIL_KEPT) :])[-TAIL_KEPT:]
        self.size += len(piece)

    def line(self, end: int) -> Line:
        if self.size <= LINE_CAP:
            return Line(bytes(self.head), b"", end, self.size)
        keep = LINE_CAP - TAIL_KEPT
        last = (bytes(self.head[keep:]) + self.tail)[-TAIL_KEPT:]
        return Line(bytes(self.head[:keep]), last, end, self.size)


class _Scan:
    """Lines out of a file read in CHUNK steps: each byte is looked at once."""

    def __init__(self, pos: int):
        self.pos = pos  # how far the file has been read
        self.part: _Assembly | None = None  # the line not finished there

    def lines(self, f: BinaryIO) -> Iterator[Line]:
        while data := f.read(CHUNK):
            *done, rest = data.split(b"\n")
            for piece in done:
                self.pos += len(piece) + 1
                yield self._line(piece)
            if rest:
                self.part = self.part or _Assembly(self.pos)
                self.part.add(rest)
                self.pos += len(rest)

    def _line(self, piece: bytes) -> Line:
        if self.part is None and len(piece) <= LINE_CAP:
            return Line(piece, b"", self.pos, len(piece))  # the usual short line, at C speed
        part = self.part or _Assembly(self.pos - len(piece) - 1)
        part.add(piece)
        self.part = None
        return part.line(self.pos)


# A long line still being written is not scanned again from its start at every step:
# where its scan stopped is kept here, by file and line start, until it is finished.
_pending: dict[tuple[str, int], _Scan] = {}


def complete_lines(path: Path, offset: int) -> Iterator[Line]:
    """Whole lines after `offset`, of any length, read in bounded chunks; a partial last line waits.

    The caller may stop at any line (a budget): nothing past it is held."""
    size = size_of(path)
    if size <= offset:
        return  # the common case when following: one stat, no open
    scan = _pending.pop((str(path), offset), None)
    if scan is None or scan.pos > size:
        scan = _Scan(offset)
    with contextlib.suppress(FileNotFoundError), open_read(path) as f:
        f.seek(scan.pos)
        yield from scan.lines(f)
    if scan.part is not None:  # the end of the file is inside a line: remember how far it was read
        _pending[(str(path), scan.part.start)] = scan
        while len(_pending) > PENDING_KEPT:
            del _pending[next(iter(_pending))]


def lines_from(path: Path, offset: int) -> Iterator[bytes]:
    """Every line from `offset` to the end (the last one even without its newline), each cut
    to its first bytes when longer than LINE_CAP: a run's events of any size in bounded memory."""
    scan = _Scan(offset)
    with contextlib.suppress(FileNotFoundError), open_read(path) as f:
        f.seek(offset)
        for line in scan.lines(f):
            yield line.head
        if scan.part is not None:
            yield scan.part.line(scan.pos).head
