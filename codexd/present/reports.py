"""Reports: one task, or many aggregated, as Markdown (fits a PR comment), JSON or HTML.

`build()` gathers a task's record into a plain dict (the JSON report); the renderers only
format that dict, so every format says the same thing.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from codexd.clock import duration, parse_iso
from codexd.present.branch import branch_line, branch_notes, branch_work
from codexd.present.costs import cost_line, cost_total
from codexd.present.runs import html_runs, markdown_runs, runs
from codexd.present.shown import json_safe, md_text, shown, shown_line
from codexd.present.views import cost_text, tokens_text
from codexd.present.vocabulary import STATUS_ICONS, item_line, outcome_text
from codexd.tasks import store

# progress.log lines that belong under "Errors and restarts" (the text after the time), for
# a task an older codexd took: the daemon now records incidents in status.json.
INCIDENTS = (
    b"Stalled:",
    b"Restarting",
    b"Restart requested",
    b"Resumed Codex session",
    b"Started the task afresh",
    b"The model endpoint is busy",
    b"The Codex session could not be resumed",
    b"Could not start Codex",
    b"Failed:",
    b"Notice undeliverable",
)


def build(status: dict[str, Any], results: dict[str, Any] | None, task_dir: Path) -> dict[str, Any]:
    """Everything a report says about one task, as plain data."""
    progress = status.get("progress") or {}
    results = results or {}
    return {
        "task_id": status["task_id"],
        "type": status.get("type"),
        "status": status["status"],
        "timing": _timing(status),
        "progress": {k: progress.get(k) for k in ("total", "completed", "percentage", "current")},
        "counts": status.get("results") or {},
        "items": progress.get("items") or [],
        "summary": results.get("summary"),
        "error": status.get("error"),
        "exit_code": status.get("exit_code"),
        "restarts": status.get("restarts") or 0,
        "stalls": status.get("stalls") or 0,
        "retries": status.get("retries") or 0,
        "usage": status.get("usage"),  # the total over all runs, as status.json has it
        "runs": runs(status),  # each run's share of it
        "incidents": incidents(status, task_dir / store.PROGRESS),
        "artifacts": artifacts(task_dir / store.ARTIFACTS),
        "results": results,
        "order": order_of(status),
        "worktree": branch_work(status),
    } | ({"cost": status["cost"]} if cost_text(status.get("cost")) else {})


def _timing(status: dict[str, Any]) -> dict[str, Any]:
    start, end = status.get("started_at"), status.get("finished_at")
    seconds = (parse_iso(end) - parse_iso(start)).total_seconds() if start and end else None
    return {
        "created_at": status.get("created_at"),
        "started_at": start,
        "finished_at": end,
        "seconds": seconds,
        "duration": duration(seconds) if seconds is not None else None,
    }


def incidents(status: dict[str, Any], log: Path) -> list[dict[str, str]]:
    """Stalls, restarts, retries and failures, as the record keeps them; for a task an older
    codexd took, as its progress.log says them."""
    recorded = status.get("incidents")
    if not isinstance(recorded, list):
        return logged_incidents(log)
    return [{"at": i["at"], "text": i["text"]} for i in recorded]


def logged_incidents(log: Path) -> list[dict[str, str]]:
    """Stalls, restarts, retries and failures from progress.log, read line by line."""
    found = []
    try:
        with log.open("rb") as f:
            for line in f:
                at, _, text = line.rstrip(b"\n").partition(b" ")
                if text.startswith(INCIDENTS):
                    found.append({"at": at.decode(), "text": text.decode("utf-8", "replace")})
    except FileNotFoundError:
        pass
    return found


def artifacts(folder: Path) -> list[dict[str, Any]]:
    """Files the agent left for the user, relative to the task folder."""
    found = []
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            path = Path(root) / name
            try:
                size = path.stat().st_size
            except OSError:
                continue
            found.append({"path": str(path.relative_to(folder.parent)), "bytes": size})
    return sorted(found, key=lambda a: a["path"])


def headline(report: dict[str, Any]) -> str:
    return f"{STATUS_ICONS.get(report['status'], '')} {report['task_id']}: {report['status']}".strip()


def counts_line(report: dict[str, Any]) -> str | None:
    """`19 items: ✅ approved 15 · ⚠️ changes requested 3 · 💬 commented 1`."""
    progress, counts = report["progress"], report["counts"]
    total = progress["total"] or sum(counts.values())
    if not total:
        return None
    done = progress["completed"] or 0
    head = f"{total} items" if not progress["total"] or done >= total else f"{done} of {total} items done"
    parts = [f"{outcome_text(k)} {n}" for k, n in counts.items()]
    return head + (": " + " · ".join(parts) if parts else "")


# -- order: dependencies and priority ---------------------------------------------------------


def order_of(status: dict[str, Any]) -> dict[str, Any]:
    """What the task ran (or runs) after, its priority, and what it waits for now, if anything."""
    after, priority, waiting = status.get("after"), status.get("priority"), status.get("waiting")
    return {
        "after": [str(a) for a in after] if isinstance(after, list) else [],
        "priority": priority if isinstance(priority, int) and not isinstance(priority, bool) else 0,
        "waiting": waiting.get("reason") if isinstance(waiting, dict) else None,
    }


def order_said(report: dict[str, Any]) -> list[str]:
    """The order section's lines; none for a task with no dependencies, priority 0, not waiting."""
    order = report.get("order") or {}
    said = [f"Runs after: {', '.join(order['after'])}"] if order.get("after") else []
    said += [f"Priority: {order['priority']}"] if order.get("priority") else []
    said += [f"Waiting: {order['waiting']}"] if order.get("waiting") else []
    return said


# -- Markdown --------------------------------------------------------------------------------


def markdown(report: dict[str, Any], level: int = 1) -> str:
    h = "#" * level
    lines = [f"{h} {md_text(headline(report))}", "", *_facts_table(report)]
    counts = counts_line(report)
    if counts:
        lines += ["", f"**Results:** {md_text(counts)}"]
    lines += _md_section(f"{h}# Items", [f"- {md_text(item_line(i))}" for i in report["items"]])
    if report["summary"]:
        lines += ["", f"{h}# Summary", "", md_block(str(report["summary"]).strip())]
    lines += _md_section(
        f"{h}# Artifacts", [f"- {md_code(a['path'])} ({_size(a['bytes'])})" for a in report["artifacts"]]
    )
    lines += markdown_runs(report, f"{h}# Runs")
    lines += _md_section(f"{h}# Order", [f"- {md_text(line)}" for line in order_said(report)])
    trouble = [f"- **Error:** {md_text(report['error'])}"] if report["error"] else []
    trouble += [f"- {md_text(i['at'] + ' ' + i['text'])}" for i in _incidents(report)]
    lines += _md_section(f"{h}# Errors and restarts", trouble)
    lines += _md_branch(report.get("worktree"), h)
    return "\n".join(lines) + "\n"


def _incidents(report: dict[str, Any]) -> list[dict[str, str]]:
    """The log's incidents, less the final failure line that only repeats the error."""
    repeat = f"Failed: {report['error']}"
    return [i for i in report["incidents"] if i["text"] != repeat]


def _facts(report: dict[str, Any]) -> list[tuple[str, str]]:
    timing = report["timing"]
    facts = [("Type", str(report["type"])), ("Status", report["status"])]
    facts += [(label, timing[key]) for label, key in (("Created", "created_at"), ("Started", "started_at"))]
    facts += [("Finished", timing["finished_at"]), ("Duration", timing["duration"])]
    if report["restarts"] or report["stalls"] or report["retries"]:
        facts.append(
            ("Restarts", f"{report['restarts']} (stalls {report['stalls']}, retries {report['retries']})")
        )
    if report["exit_code"] is not None:
        facts.append(("Exit code", str(report["exit_code"])))
    if report.get("usage"):
        facts.append(("Tokens", tokens_text(report["usage"])))
    facts.append(("Estimated cost", cost_text(report.get("cost")) or ""))
    return [(k, v) for k, v in facts if v]


def _facts_table(report: dict[str, Any]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {k} | {_md_cell(v)} |" for k, v in _facts(report))]


def _md_cell(text: str) -> str:
    """A fact the daemon knows (a type name, a time): kept as it is, in its cell."""
    return shown_line(text).replace("|", "\\|")


def md_code(text: str) -> str:
    """One line as a code span: its fence is longer than any run of backticks in it."""
    flat = shown_line(str(text))
    fence = "`" * (_longest_run(flat, "`") + 1)
    pad = " " if flat[:1] == "`" or flat[-1:] == "`" else ""  # CommonMark strips one space each side
    return f"{fence}{pad}{flat}{pad}{fence}"


def md_block(text: str) -> str:
    """Many lines as a fenced block: shown as written, never rendered as Markdown or HTML."""
    body = shown(text)
    fence = "`" * max(3, _longest_run(body, "`") + 1)
    return f"{fence}text\n{body}\n{fence}"


def _longest_run(text: str, char: str) -> int:
    longest = run = 0
    for c in text:
        run = run + 1 if c == char else 0
        longest = max(longest, run)
    return longest


def _md_section(heading: str, lines: list[str]) -> list[str]:
    return ["", heading, "", *lines] if lines else []


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB", "GB"):
        n_units = n / 1000 ** ("kMG".index(unit[0]) + 1)
        if n_units < 1000 or unit == "GB":
            return f"{n_units:.1f} {unit}"
    return f"{n} B"


# -- the branch of a task run in a git worktree -------------------------------------------------


def _md_branch(work: dict[str, Any] | None, h: str) -> list[str]:
    if not work:
        return []
    lines = ["", f"{h}# Branch", "", md_code(branch_line(work)), ""]
    lines += [f"- {md_code(commit)}" for commit in work["commits"]]
    lines += [f"- {md_text(note)}" for note in branch_notes(work)]
    if work["diff_stat"]:
        lines += ["", md_block("\n".join(work["diff_stat"]))]
    return lines


def _html_branch(work: dict[str, Any] | None, level: int) -> list[str]:
    if not work:
        return []
    e = _html
    entries = [f"<code>{e(commit)}</code>" for commit in work["commits"]]
    entries += [e(note) for note in branch_notes(work)]
    parts = [f"<h{level}>Branch</h{level}>", f"<p><code>{e(branch_line(work))}</code></p>"]
    parts += [f"<ul>{''.join(f'<li>{entry}</li>' for entry in entries)}</ul>"] if entries else []
    if work["diff_stat"]:
        parts.append(f'<div class="summary">{e(chr(10).join(work["diff_stat"]))}</div>')
    return parts


# -- HTML: one self-contained file --------------------------------------------------------------

STYLE = """
body{font:15px/1.5 -apple-system,system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}
body{color:#222}
h1,h2,h3{line-height:1.2}table{border-collapse:collapse}td{padding:.2rem .8rem .2rem 0;vertical-align:top}
td:first-child{color:#666}ul{padding-left:1.2rem}.summary{white-space:pre-wrap;background:#f6f8fa;padding:.8rem}
code{background:#f6f8fa;padding:0 .2rem}.error{color:#a32037}
""".strip()


def html_page(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_html(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )


def _html(text: str) -> str:
    """Agent text as HTML: controls made visible (codexd.present.shown), then tags and entities escaped."""
    return html.escape(shown(str(text)))


def html_report(report: dict[str, Any], level: int = 1) -> str:
    e = _html
    parts = [f"<h{level}>{e(headline(report))}</h{level}>", "<table>"]
    parts += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in _facts(report)]
    parts.append("</table>")
    counts = counts_line(report)
    if counts:
        parts.append(f"<p><strong>Results:</strong> {e(counts)}</p>")
    sub = level + 1
    parts += _html_list(sub, "Items", [item_line(i) for i in report["items"]])
    if report["summary"]:
        parts.append(
            f'<h{sub}>Summary</h{sub}><div class="summary">{e(str(report["summary"]).strip())}</div>'
        )
    files = [f"<code>{e(a['path'])}</code> ({_size(a['bytes'])})" for a in report["artifacts"]]
    parts += _html_list(sub, "Artifacts", files, escaped=True)
    parts += html_runs(report, sub)
    parts += _html_list(sub, "Order", order_said(report))
    trouble = [f'<span class="error">Error: {e(report["error"])}</span>'] if report["error"] else []
    trouble += [e(f"{i['at']} {i['text']}") for i in _incidents(report)]
    parts += _html_list(sub, "Errors and restarts", trouble, escaped=True)
    parts += _html_branch(report.get("worktree"), sub)
    return "\n".join(parts) + "\n"


def _html_list(level: int, title: str, entries: list[str], escaped: bool = False) -> list[str]:
    if not entries:
        return []
    items = "".join(f"<li>{entry if escaped else _html(entry)}</li>" for entry in entries)
    return [f"<h{level}>{title}</h{level}>", f"<ul>{items}</ul>"]


def render(report: dict[str, Any], form: str) -> str:
    if form == "json":
        return json_safe(json.dumps(report, indent=2, ensure_ascii=False)) + "\n"
    if form == "html":
        return html_page(f"codexd: {report['task_id']}", html_report(report))
    return markdown(report)


# -- many tasks ------------------------------------------------------------------------------------


def aggregate(reports: Iterable[dict[str, Any]], since: datetime | None, now: datetime) -> dict[str, Any]:
    chosen = list(reports)
    by_outcome: Counter[str] = Counter()
    for report in chosen:
        by_outcome.update({k: v for k, v in report["counts"].items() if isinstance(v, int)})
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "since": since.isoformat() if since else None,
        "tasks": len(chosen),
        "by_status": dict(sorted(Counter(r["status"] for r in chosen).items())),
        "by_outcome": dict(by_outcome.most_common()),
        "restarts": sum(r["restarts"] for r in chosen),
        "usage": _usage_total(chosen),
        "reports": chosen,
    } | cost_total(chosen)


def _usage_total(reports: list[dict[str, Any]]) -> dict[str, int]:
    """Tokens over the tasks, keyed as in status.json; a task with no figure adds nothing."""
    total: Counter[str] = Counter()
    for usage in (r.get("usage") for r in reports):
        if isinstance(usage, dict):
            total.update({k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)})
    keys = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens", "total_tokens")
    return {key: total[key] for key in keys}


def aggregate_markdown(total: dict[str, Any]) -> str:
    since = f" since {total['since']}" if total["since"] else ""
    lines = [f"# Codex tasks: {total['tasks']}{since}", "", "| status | tasks |", "|---|---|"]
    lines += [f"| {STATUS_ICONS.get(s, '')} {md_text(s)} | {n} |" for s, n in total["by_status"].items()]
    if total["by_outcome"]:
        lines += ["", "| outcome | items |", "|---|---|"]
        lines += [f"| {md_text(outcome_text(o))} | {n} |" for o, n in total["by_outcome"].items()]
    lines += ["", f"Restarts: {total['restarts']}", "", f"Tokens: {tokens_text(total['usage'])}", ""]
    cost = cost_line(total)
    lines += [cost, ""] if cost else []
    lines += [markdown(r, level=2) for r in total["reports"]]
    return "\n".join(lines)


def render_aggregate(total: dict[str, Any], form: str) -> str:
    if form == "json":
        return json_safe(json.dumps(total, indent=2, ensure_ascii=False)) + "\n"
    return aggregate_markdown(total)
