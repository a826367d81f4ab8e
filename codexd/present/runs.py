"""A report's "Runs": each Codex run of the task (first start, resume, new session) and the
tokens it used, which add up to the task's total.

A resumed run continues its session, so its share is the session's figure when it ended
less the figure when it began; a new session starts from zero.
"""

from __future__ import annotations

import html
from typing import Any

from codexd.fields import Fields
from codexd.present.shown import shown_line
from codexd.present.views import tokens_text
from codexd.tasks.records import Cursor
from codexd.tasks.usage import shares


def runs(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON report's `runs`; empty for a task an older codexd took or that never ran."""
    cursor = Cursor.read(Fields(status.get("daemon")))
    return [
        {"run": n, "at": run.at, "how": how, "session": run.thread, "usage": used.to_dict()}
        for n, (run, how, used) in enumerate(shares(cursor.runs, cursor.sessions), start=1)
    ]


HEAD = ("Run", "Began", "How", "Session", "Tokens")


def _rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = [
        (str(r["run"]), r["at"] or "-", r["how"], r["session"], tokens_text(r["usage"]))
        for r in report.get("runs") or []
    ]
    if found:
        found.append(("", "", "", "Total", tokens_text(report.get("usage"))))
    return found


def markdown_runs(report: dict[str, Any], heading: str) -> list[str]:
    rows = _rows(report)
    if not rows:
        return []
    table = ["| " + " | ".join(HEAD) + " |", "|---|---|---|---|---|"]
    table += ["| " + " | ".join(shown_line(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return ["", heading, "", *table]


def html_runs(report: dict[str, Any], level: int) -> list[str]:
    rows = _rows(report)
    if not rows:
        return []
    cells = ["<tr>" + "".join(f"<th>{h}</th>" for h in HEAD) + "</tr>"]
    for row in rows:
        cells.append("<tr>" + "".join(f"<td>{html.escape(shown_line(c))}</td>" for c in row) + "</tr>")
    return [f"<h{level}>Runs</h{level}>", f'<table class="runs">{"".join(cells)}</table>']
