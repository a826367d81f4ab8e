"""Task types: what Codex is asked to return, and how the final message becomes results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codexd import jsonlines
from codexd.codex.events import one_line
from codexd.tasks.records import Item, Progress

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


def build_results(
    kind: TaskType, message: str | None, progress: Progress
) -> tuple[dict[str, Any], dict[str, int], Progress]:
    """results.json, the outcome counts, and the progress completed from the final answer."""
    results: dict[str, Any]
    if kind.output_schema is None or message is None:
        results = {"summary": message}
    else:
        parsed = jsonlines.object_of(message)
        if parsed is not None:
            results = parsed
        else:
            results = {
                "summary": message,
                "parse_error": "the final message was not the JSON the schema asks for",
            }
    final = _final_items(kind, results)
    if final is not None and not progress.items:
        progress = Progress(
            total=len(final), completed=len(final), items=tuple(final), source=progress.source
        )
    counts = count_outcomes(kind, final if final is not None else list(progress.items))
    for outcome, n in counts.items():
        results.setdefault(outcome, n)
    return results, counts, progress


def count_outcomes(kind: TaskType, items: list[Item]) -> dict[str, int]:
    counts = Counter(item.outcome for item in items)
    ordered = {outcome: counts.get(outcome, 0) for outcome in kind.expected_outcomes}
    ordered.update(sorted(counts.items()))
    return ordered
