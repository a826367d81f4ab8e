"""What a notice says: title, bodies, fields, and its apprise type.

Pure functions of a task's record: no apprise, no files. Desktop notifiers and other
services get the whole text; Slack gets the lead with the counts as attachment fields,
Discord the lead in Markdown with the same fields in its embed (codexd.notify.plugins).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from codexd.clock import duration, parse_iso
from codexd.notify.endpoints import Field, NoticeKind
from codexd.present.shown import md_text, shown_line
from codexd.present.views import cost_text, tokens_text
from codexd.present.vocabulary import outcome_label
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskEvent

# The events a notice can be sent for, and how each is coloured.
KIND = {
    TaskEvent.COMPLETED: NoticeKind.SUCCESS,
    TaskEvent.FAILED: NoticeKind.FAILURE,
    TaskEvent.STALLED: NoticeKind.WARNING,
    TaskEvent.CANCELLED: NoticeKind.WARNING,
    TaskEvent.RESTARTED: NoticeKind.INFO,
    TaskEvent.USAGE_LIMIT: NoticeKind.WARNING,
    TaskEvent.USAGE_RESUMED: NoticeKind.INFO,
}
# The account's usage limit: one notice when every task begins to wait, one when work resumes.
HOLD_EVENTS = (TaskEvent.USAGE_LIMIT, TaskEvent.USAGE_RESUMED)
EVENTS = tuple(KIND)
TOTAL = {"pr_review": "Total PRs"}  # the seed's name for the total of a type's items


@dataclass(frozen=True)
class Notice:
    key: str  # the same event of the same task always has the same key: a repeat is dropped
    task_id: str
    event: str
    title: str
    text: str  # everything, as plain text
    markdown: str  # the lead, as Markdown
    kind: NoticeKind
    lead: str = ""  # the facts and where to look, without the fields
    fields: tuple[Field, ...] = ()


def key_of(status: TaskStatus, event: TaskEvent) -> str:
    """Ends happen once; stalls and restarts are numbered by their counts."""
    if event == TaskEvent.STALLED:
        return f"{status.task_id}.stalled.{status.stalls}"
    if event == TaskEvent.RESTARTED:
        return f"{status.task_id}.restarted.{status.restarts}"
    if event in HOLD_EVENTS and status.waiting is not None:  # one each per hold
        return f"{status.task_id}.{event}.{status.waiting.until}"
    return f"{status.task_id}.{event}"


def render(status: TaskStatus, event: TaskEvent, now: datetime) -> Notice:
    if event in HOLD_EVENTS:
        return _hold_notice(status, event)
    facts = _facts(status, event, now)
    counts = _counts(status)
    what = _what_happened(status, event)
    look = f"codexd report {status.task_id}"
    # Values are task and agent text: shown, never obeyed (codexd.present.shown); Markdown escaped.
    lead = [" · ".join(f"{k}: {shown_line(v)}" for k, v in facts), f"Details: {look}"]
    text_lines = lead[:1]
    if counts:
        text_lines.append(" · ".join(f"{k}: {shown_line(v)}" for k, v in counts))
    text_lines += [f"{k}: {shown_line(v)}" for k, v in what]
    text_lines.append(lead[1])
    fields = [Field(k, shown_line(v)) for k, v in counts] + [Field(k, shown_line(v), False) for k, v in what]
    markdown = " · ".join(f"**{k}:** {md_text(v)}" for k, v in facts) + f"\nDetails: `{look}`"
    return Notice(
        key=key_of(status, event),
        task_id=status.task_id,
        event=event,
        title=shown_line(f"Codex task {event}: {status.task_id}"),
        text="\n".join(text_lines),
        markdown=markdown,
        kind=KIND[event],
        lead="\n".join(lead),
        fields=tuple(fields),
    )


def _facts(status: TaskStatus, event: TaskEvent, now: datetime) -> list[tuple[str, str]]:
    facts = [("Type", status.type)]
    if status.started_at:
        end = parse_iso(status.finished_at) if status.finished_at else now
        took = duration((end - parse_iso(status.started_at)).total_seconds())
        facts.append(("Duration" if status.is_terminal else "Running for", took))
    if status.restarts:
        facts.append(("Restarts", str(status.restarts)))
    if status.usage is not None:
        facts.append(("Tokens", tokens_text(status.usage.to_dict())))
    if status.cost is not None:
        facts.append(("Estimated cost", cost_text(status.cost.to_dict()) or ""))
    return facts


def _counts(status: TaskStatus) -> list[tuple[str, str]]:
    """Total and one line per outcome (pr_review: approved, changes requested, commented)."""
    progress = status.progress
    outcomes = {k: v for k, v in status.results.items() if isinstance(v, int) and not isinstance(v, bool)}
    total = progress.total or sum(outcomes.values()) or None
    counts: list[tuple[str, str]] = []
    if total:
        done = f"{progress.completed}/{total}" if progress.completed != total else str(total)
        counts.append((TOTAL.get(status.type, "Total"), done))
    counts += [(outcome_label(k), str(n)) for k, n in outcomes.items()]
    return counts


def _what_happened(status: TaskStatus, event: TaskEvent) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if status.progress.current and not status.is_terminal:
        found.append(("Current", status.progress.current))
    if event == TaskEvent.FAILED and status.error:
        found.append(("Error", status.error))
    elif event in (TaskEvent.STALLED, TaskEvent.RESTARTED, TaskEvent.CANCELLED) and status.last_log:
        found.append(("What happened", status.last_log.text))
    return found


def _hold_notice(status: TaskStatus, event: TaskEvent) -> Notice:
    """The daemon-wide wait for the account's usage limit: sent with the task that met it."""
    reason = status.waiting.reason if status.waiting else "usage limit reached"
    if event == TaskEvent.USAGE_LIMIT:
        title = "Codex usage limit reached: tasks wait"
        said = reason.replace("; resumes at ", "; tasks wait until ")
        lead = f"{said}. No task starts before then; waiting tasks resume by themselves."
    else:
        title = "Codex usage limit over: work resumes"
        lead = f"Work resumes: the wait for the usage limit is over ({reason})."
    lead = shown_line(lead)
    fields = (Field("Met by", status.task_id), Field("Codex said", shown_line(status.error or "-"), False))
    text = f"{lead}\nMet by: {status.task_id}\nDetails: codexd health"
    return Notice(
        key=key_of(status, event),
        task_id=status.task_id,
        event=event,
        title=title,
        text=text,
        markdown=f"{md_text(lead)}\nDetails: `codexd health`",
        kind=KIND[event],
        lead=f"{lead}\nDetails: codexd health",
        fields=fields if event == TaskEvent.USAGE_LIMIT else fields[:1],
    )


def test_notice(host: str, events: list[str]) -> Notice:
    """What `codexd notify test` sends: it says where it came from and what will follow."""
    hears = ", ".join(events) or "nothing (notify.events is empty)"
    lead = f"Notices from codexd on {host} reach you here."
    text = f"{lead}\nYou will hear when a task is: {hears}."
    markdown = f"Notices from codexd on **{md_text(host)}** reach you here."
    fields = (Field("You will hear when a task is", hears, False),)
    return Notice("test", "-", "test", "codexd test notice", text, markdown, NoticeKind.INFO, lead, fields)
