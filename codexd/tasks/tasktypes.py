"""Task types: what Codex is asked to return, and how the final message becomes results."""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codexd import jsonlines
from codexd.codex.events import one_line
from codexd.tasks.records import Item, Progress, ProgressSource

SCHEMAS = Path(__file__).parent / "schemas"
PR_VERDICTS = ("approved", "changes_requested", "commented")


@dataclass(frozen=True)
class TaskType:
    name: str
    output_schema: Path | None = None
    items_field: str | None = None
    outcome_field: str = "outcome"
    title_field: str = "title"
    expected_outcomes: tuple[str, ...] = ()

    def item_title(self, entry: dict[str, Any]) -> str:
        title = _scalar(entry.get(self.title_field))
        number = _scalar(entry.get("number"))
        return f"#{number} - {title}" if number else title


BUILTIN: dict[str, TaskType] = {
    "generic": TaskType("generic"),
    "pr_review": TaskType(
        "pr_review",
        output_schema=SCHEMAS / "pr_review.json",
        items_field="prs",
        outcome_field="verdict",
        expected_outcomes=PR_VERDICTS,
    ),
}


def from_settings(configured: dict[str, Any]) -> dict[str, TaskType]:
    """Built-in types plus those of the configuration (which may redefine a built-in)."""
    types = dict(BUILTIN)
    for name, cfg in configured.items():
        types[name] = TaskType(name, **cfg.model_dump())  # a setting added there is a field here
    return types


def _final_items(kind: TaskType, parsed: dict[str, Any]) -> list[Item] | None:
    entries = parsed.get(kind.items_field) if kind.items_field else None
    if not isinstance(entries, list):
        return None
    return [
        Item(kind.item_title(e), _scalar(e.get(kind.outcome_field)) or "done")
        for e in entries
        if isinstance(e, dict)
    ]


def _scalar(found: object) -> str:
    """A title, number or outcome the agent wrote, as one line; "" for null, lists and objects."""
    if isinstance(found, bool) or not isinstance(found, str | int | float):
        return ""
    return one_line(str(found), 200)


FLAG = "⚠️"  # begins an error that a person should look at: the task ended, its results are not usable
MISMATCH = FLAG + " results did not match the {name} schema: {why}"  # a task's error, shown as it is


@functools.cache
def _required(schema: Path) -> tuple[str, ...]:
    """The keys the schema's top-level object requires (none if it cannot be read)."""
    found = jsonlines.object_of(schema.read_bytes()) if schema.is_file() else None
    required = found.get("required") if found else None
    return tuple(k for k in required if isinstance(k, str)) if isinstance(required, list) else ()


def mismatch(kind: TaskType, message: str | None, parsed: dict[str, Any] | None) -> str | None:
    """Why the final message is not the results the type's schema asks for; None when it is."""
    if kind.output_schema is None:
        return None
    if message is None:
        why = "there was no final message"
    elif parsed is None:
        why = "the final message is not a JSON object"
    elif missing := [k for k in _required(kind.output_schema) if k not in parsed]:
        why = f"it lacks {', '.join(map(repr, missing))}"
    elif kind.items_field and not isinstance(parsed.get(kind.items_field), list):
        why = f"{kind.items_field!r} is not a list"
    else:
        return None
    return MISMATCH.format(name=kind.name, why=why)


def build_results(
    kind: TaskType, message: str | None, progress: Progress, completed: bool = False
) -> tuple[dict[str, Any], dict[str, int], Progress]:
    """results.json, the outcome counts, and the progress completed from the final answer.

    `completed`: the run ended on its own, so its final message is held to the type's schema;
    when it does not fit, results.json says why in `parse_error` (the task then fails). A
    cancelled or failed task is not held to it: it may have no final message at all."""
    parsed = jsonlines.object_of(message) if message is not None and kind.output_schema else None
    results: dict[str, Any] = parsed if parsed is not None else {"summary": message}
    why = mismatch(kind, message, parsed) if completed else None
    if why is not None:
        results["parse_error"] = why
    progress = merged(progress, _final_items(kind, results))
    counts = count_outcomes(kind, list(progress.items))
    results.update(counts)  # derived from the items: they agree by construction
    return results, counts, progress


def merged(progress: Progress, final: list[Item] | None) -> Progress:
    """The one list of items, from the agent's reports and its final JSON (README "Outcome and
    results"): reported items keep their order, each replaced by the final JSON's entry for the
    same item (the same `#N`, else the same title); the final JSON's other entries follow. A
    plan's steps (Codex's todo_list) are not items of the type: the final JSON's replace them."""
    if final is None:
        return progress
    if progress.source != ProgressSource.REPORTS:
        items = tuple(final)
    else:
        by_key = {_key(item.title): item for item in final}
        items = tuple(by_key.pop(_key(item.title), item) for item in progress.items)
        items += tuple(by_key.values())
    total = max(progress.total or 0, len(items)) if progress.source == ProgressSource.REPORTS else len(items)
    return Progress(total=total, completed=len(items), items=items, source=progress.source)


def _key(title: str) -> str:
    """What makes two titles one item: a PR's `#N`, else the title itself."""
    number = re.match(r"\s*#(\d+)\b", title)
    return f"#{number.group(1)}" if number else title.strip().casefold()


def count_outcomes(kind: TaskType, items: list[Item]) -> dict[str, int]:
    counts = Counter(item.outcome for item in items)
    ordered = {outcome: counts.get(outcome, 0) for outcome in kind.expected_outcomes}
    ordered.update(sorted(counts.items()))
    return ordered
