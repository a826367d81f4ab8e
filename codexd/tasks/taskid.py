"""Task ids: the pattern of SPEC.md, and making one from a file name."""

from __future__ import annotations

import re
from collections.abc import Callable

from codexd.config.defaultdirs import is_task_id
from codexd.errors import BadTaskId

MAX_LEN = 128
is_valid = is_task_id  # SPEC's pattern, defined once where the quick commands can reach it


def check(task_id: str) -> str:
    if not is_valid(task_id):
        raise BadTaskId(
            f"invalid task id {task_id!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return task_id


def from_name(name: str) -> str:
    """A valid id made from a file name: `Review PRs!.md` -> `Review-PRs`."""
    stem = name[: -len(".md")] if name.endswith(".md") else name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")
    return slug[:100] or "task"


def unique(base: str, taken: Callable[[str], bool]) -> str:
    """`base`, or `base-2`, `base-3`, ... whichever is free first."""
    candidate, n = base, 1
    while taken(candidate):
        n += 1
        candidate = f"{base}-{n}"
    return candidate
