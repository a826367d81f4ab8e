"""The last lines of a file, read backwards from its end: a 1 GB log costs one block."""

from __future__ import annotations

import os

BLOCK = 64 * 1024


def tail_lines(path: str | os.PathLike[str], n: int, end: int | None = None, block: int = BLOCK) -> list[str]:
    """The last `n` lines of `path` (before byte `end`), not reading the whole file."""
    if n <= 0:
        return []
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed just below; FileNotFoundError is an answer)
    except FileNotFoundError:
        return []
    with f:
        size = f.seek(0, os.SEEK_END)
        end = size if end is None else min(end, size)
        data, pos = b"", end
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    return data.decode("utf-8", "replace").splitlines()[-n:]
