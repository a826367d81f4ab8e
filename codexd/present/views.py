"""Human-readable text for the CLI and the dashboard: task rows, one task's details, durations
(the icons and words they use are in `vocabulary`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from codexd.clock import duration, parse_iso
from codexd.present.shown import shown, shown_line
from codexd.present.vocabulary import item_line
from codexd.tasks.tasktypes import FLAG

TASK_COLUMNS = ("ID", "TYPE", "STATUS", "PROGRESS", "ELAPSED", "RESTARTS", "TOKENS")


def elapsed(
    task: dict[str, Any], now: datetime | None = None, said: Callable[[float], str] = duration
) -> str:
    start = task.get("started_at")
    if not start:
        return "-"
    end = task.get("finished_at")
    stop = parse_iso(end) if end else (now or datetime.now(UTC))
    return said((stop - parse_iso(start)).total_seconds())


def progress_text(progress: dict[str, Any] | None) -> str:
    progress = progress or {}
    total, completed = progress.get("total"), progress.get("completed") or 0
    if total:
        return f"{completed}/{total} ({progress.get('percentage') or 0:.1f}%)"
    return f"{completed} done" if completed else "-"


def task_row(task: dict[str, Any], now: datetime | None = None) -> tuple[str, ...]:
    """One task under TASK_COLUMNS, in `codexd list` and the dashboard's task list."""
    return (
        task["task_id"],
        str(task.get("type", "")),
        status_text(task),
        progress_text(task.get("progress")),
        elapsed(task, now),
        str(task.get("restarts") or 0),
        tokens_short(task.get("usage")),
    )


STATUS_HELD = 30  # characters of what holds a queued task, in the list's STATUS column


def status_text(task: dict[str, Any]) -> str:
    """The STATUS column: `queued (after a, b)`, `queued (same folder; priority 5)`: what holds
    a queued task back, and its priority, briefly (the 80-column dashboard cuts columns)."""
    state = str(task.get("status", ""))
    if state != "queued":
        return state
    waiting, after, priority = task.get("waiting"), task.get("after"), _priority(task)
    reason = waiting.get("reason") if isinstance(waiting, dict) else None
    held = []
    if isinstance(reason, str):
        if reason.endswith(": same folder"):
            held.append("same folder")
        elif reason.startswith("waiting for ") and isinstance(after, list) and after:
            held.append("after " + ", ".join(map(str, after)))
        else:
            held.append("waiting")
    if priority:
        held.append(f"priority {priority}")
    said = "; ".join(held)
    if len(said) > STATUS_HELD:
        said = said[: STATUS_HELD - 1] + "…"
    return f"{state} ({said})" if said else state


def order_lines(task: dict[str, Any]) -> list[tuple[str, str]]:
    """A task's place in the queue, for `status` and the dashboard: what it runs after, its
    priority (when not 0)."""
    found = []
    after = task.get("after")
    if isinstance(after, list) and after:
        found.append(("after", ", ".join(map(str, after))))
    if _priority(task):
        found.append(("priority", str(_priority(task))))
    return found


def _priority(task: dict[str, Any]) -> int:
    """A task's priority as status.json has it; 0 (the default) for anything else."""
    priority = task.get("priority")
    return priority if isinstance(priority, int) and not isinstance(priority, bool) else 0


def _count(usage: object, key: str) -> int:
    found = usage.get(key) if isinstance(usage, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else 0


def tokens_short(usage: object) -> str:
    """A task's total tokens in a few characters: 950, 53.3k, 1.2M; "-" before any is known."""
    if not isinstance(usage, dict):
        return "-"
    total = _count(usage, "total_tokens")
    for size, unit in ((1_000_000, "M"), (1_000, "k")):
        if total >= size:
            return f"{total / size:.1f}{unit}"
    return str(total)


def tokens_text(usage: object) -> str:
    """`53,330 (input 48,210, cached 30,400; output 5,120, reasoning 900)`; "-" before any is known."""
    if not isinstance(usage, dict):
        return "-"
    count = {key: f"{_count(usage, key):,}" for key in usage}
    return (
        f"{count.get('total_tokens', 0)} (input {count.get('input_tokens', 0)}, cached "
        f"{count.get('cached_input_tokens', 0)}; output {count.get('output_tokens', 0)}, "
        f"reasoning {count.get('reasoning_output_tokens', 0)})"
    )


def dollars(cost: object) -> str | None:
    """`≈ $0.42` (`≈ $0.0035` below a cent) from a `cost` as status.json has it; None without one."""
    usd = cost.get("usd") if isinstance(cost, dict) else None
    if not isinstance(usd, int | float) or isinstance(usd, bool) or not 0 <= usd < 1e15:
        return None
    return f"≈ ${usd:,.2f}" if usd >= 0.01 or usd == 0 else f"≈ ${usd:.4f}"


def recovery_facts(task: dict[str, Any]) -> list[str]:
    """`Restarts: 1   Stalls: 1   Estimated cost: ≈ $0.42`, as the dashboard's task view says them."""
    found = [f"{key.capitalize()}: {task[key]}" for key in ("restarts", "stalls", "retries") if task.get(key)]
    cost = dollars(task.get("cost"))
    return [*found, f"Estimated cost: {cost}"] if cost else found


def cost_text(cost: object) -> str | None:
    """`≈ $0.42 (gpt-5.1-codex, at the prices in your settings)`; None without a cost."""
    said = dollars(cost)
    if said is None or not isinstance(cost, dict):
        return None
    model = cost.get("model")
    return f"{said} ({model}, at the prices in your settings)" if isinstance(model, str) else said


def account_text(snapshot: object, now: datetime | None = None) -> str | None:
    """`5h window 42% used, resets 15:05; weekly 12% used, resets Tue 09:00 (as of 14:02)`:
    the account's rate limits as last seen; None when none were."""
    if not isinstance(snapshot, dict):
        return None
    moment = now or datetime.now(UTC)
    parts = [_window_text(snapshot.get(name), moment) for name in ("primary", "secondary")]
    said = "; ".join(part for part in parts if part)
    seen = snapshot.get("seen_at")
    return f"{said} (as of {_local_time(seen, moment)})" if said and isinstance(seen, str) else said or None


def _window_text(window: object, now: datetime) -> str | None:
    if not isinstance(window, dict) or not isinstance(window.get("used_percent"), int | float):
        return None
    minutes = window.get("window_minutes")
    name = _WINDOWS.get(minutes) if isinstance(minutes, int) else None
    if name is None and isinstance(minutes, int) and minutes > 0:
        name = f"{minutes // 60}h window" if minutes % 60 == 0 else f"{minutes} min window"
    said = f"{name or 'limit'} {window['used_percent']:.0f}% used"
    resets = window.get("resets_at")
    if isinstance(resets, str):
        when = _local_time(resets, now)
        said += f", has reset since ({when})" if _passed(resets, now) else f", resets {when}"
    return said


def _passed(at: str, now: datetime) -> bool:
    try:
        return parse_iso(at) <= now
    except ValueError:
        return False


_WINDOWS = {300: "5h window", 1440: "daily", 10080: "weekly"}


def _local_time(at: str, now: datetime) -> str:
    """`15:05` today, `Tue 09:00` within the week, else the date too (local time)."""
    try:
        moment = parse_iso(at).astimezone()
    except ValueError:
        return at
    local_now = now.astimezone()
    if moment.date() == local_now.date():
        return moment.strftime("%H:%M")
    return moment.strftime("%a %H:%M" if abs((moment - local_now).days) < 6 else "%Y-%m-%d %H:%M")


def task_table(tasks: list[dict[str, Any]]) -> str:
    """`codexd list`: a row per task, then a line for each task flagged ⚠️ (results that did
    not match its type's schema)."""
    rows = [task_row(t) for t in tasks]
    columns: tuple[str, ...] = TASK_COLUMNS
    if any(branch_of(t) for t in tasks):  # worktree tasks: their branch, in a column of its own
        columns, rows = (
            (*columns, "BRANCH"),
            [(*r, branch_of(t) or "-") for r, t in zip(rows, tasks, strict=True)],
        )
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    table = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [columns, *rows]
    ]
    flags = [f"{t['task_id']}: {t['error']}" for t in tasks if is_flagged(t)]
    return "\n".join([*table, *(shown(line).replace("\n", " ") for line in flags)])


def branch_of(task: dict[str, Any]) -> str | None:
    """The branch of a task run in a git worktree (`worktree.branch` in status.json)."""
    tree = task.get("worktree")
    branch = tree.get("branch") if isinstance(tree, dict) else None
    return shown_line(branch) if isinstance(branch, str) else None


def is_flagged(task: dict[str, Any]) -> bool:
    error = task.get("error")
    return isinstance(error, str) and error.startswith(FLAG)


def task_details(task: dict[str, Any]) -> str:
    progress = task.get("progress") or {}
    lines = [
        f"{task['task_id']}  ({task.get('type')})  {task.get('status')}",
        f"  created   {task.get('created_at')}",
        f"  started   {task.get('started_at') or '-'}   elapsed {elapsed(task)}",
    ]
    if task.get("finished_at"):
        code = task.get("exit_code")  # none for a run that was stopped or never started
        lines.append(f"  finished  {task['finished_at']}" + ("" if code is None else f"   exit code {code}"))
    waiting = task.get("waiting")
    if isinstance(waiting, dict) and waiting.get("reason"):
        lines.append(f"  waiting   {waiting['reason']}")
    lines += [f"  {name:<9} {value}" for name, value in order_lines(task)]
    lines.append(f"  progress  {progress_text(progress)}")
    if task.get("usage"):
        lines.append(f"  tokens    {tokens_text(task['usage'])}")
    cost = cost_text(task.get("cost"))
    if cost:
        lines.append(f"  cost      {cost}")
    if progress.get("current"):
        lines.append(f"  current   {progress['current']}")
    for item in progress.get("items") or []:
        lines.append(f"    {item_line(item)}")
    if task.get("results"):
        lines.append("  results   " + ", ".join(f"{k} {v}" for k, v in task["results"].items()))
    if task.get("last_log"):
        lines.append(f"  last log  {task['last_log']['at']} {task['last_log']['text']}")
    extra = [
        f"pid {task['pid']}" if task.get("pid") else "",
        f"restarts {task.get('restarts') or 0}",
        f"stalls {task['stalls']}" if task.get("stalls") else "",
        f"retries {task['retries']}" if task.get("retries") else "",
        f"thread {task['thread_id']}" if task.get("thread_id") else "",
    ]
    lines.append("  " + "   ".join(e for e in extra if e))
    if task.get("error"):
        lines.append(f"  error     {task['error']}")
    lines.append(f"  log       {task.get('log_file')}")
    lines += _branch(task)
    # Titles, errors and log lines are agent text: shown, never obeyed, and never a line of their own.
    return "\n".join(shown(line).replace("\n", " ") for line in lines)


def _branch(task: dict[str, Any]) -> list[str]:
    """A worktree task's branch, the commit it started from and where its worktree is."""
    branch, tree = branch_of(task), task.get("worktree")
    if not isinstance(tree, dict) or not branch:
        return []
    return [f"  branch    {branch} from {str(tree.get('base'))[:12]}   worktree {tree.get('path')}"]


def _task_health(task: dict[str, Any]) -> str:
    if task.get("resume_in") is not None:
        state = f"runs again in {duration(task['resume_in'])}"
    elif task.get("alive") is False:
        state = f"pid {task['pid']} gone"
    else:
        state = f"pid {task['pid']} alive, idle {duration(task['idle'])} of {duration(task['stall_timeout'])}"
    counts = f"restarts {task['restarts']}, retries {task['retries']}"
    busy = f"; {busy_text(task['busy'])}" if task.get("busy") else ""
    return f"  {task['task_id']}  {task['status']}  {state}{busy}  ({counts})"


def busy_text(busy: dict[str, Any]) -> str:
    """`busy: cargo build, 3m12s of CPU`: a silent task's tree seen working since its last
    progress (the command line is the agent's: shown, on one line)."""
    what = busy.get("what")
    cpu = busy.get("cpu")
    said = f"{duration(cpu)} of CPU" if isinstance(cpu, int | float) else "working"
    return f"busy: {shown_line(str(what))}, {said}" if what else f"busy: {said}"


def task_busy(task: dict[str, Any]) -> str:
    """The busy line of an active task whose tree the daemon saw working since its last progress."""
    cursor = task.get("daemon")
    busy = cursor.get("busy") if isinstance(cursor, dict) else None
    if task.get("status") != "in_progress" or not isinstance(busy, dict):
        return ""
    active = cursor.get("active_at") if isinstance(cursor, dict) else None
    at = busy.get("at")
    fresh = isinstance(at, int | float) and (not isinstance(active, int | float) or at > active)
    return busy_text(busy) if fresh else ""


def health_report(found: dict[str, Any]) -> str:
    """`codexd health`: the daemon, every active task, then what is wrong and what happens next."""
    daemon = found["daemon"]
    if daemon["pid"]:
        last = daemon["last_check"] or "not yet"
        lines = [f"daemon: running (pid {daemon['pid']}); its last health check: {last}"]
    else:
        lines = ["daemon: not running: tasks are not supervised; start it with `codexd daemon`"]
    if found.get("account"):
        lines.append(f"account: {found['account']['reason']}")
    limits = account_text(found.get("rate_limits"))
    lines += [f"rate limits: {limits}"] if limits else []
    tasks = found["tasks"]
    lines.append(f"active tasks: {len(tasks)}")
    lines += [_task_health(task) for task in tasks]
    findings = found["findings"]
    if not findings:
        lines.append("problems: none")
    else:
        lines.append(f"problems: {len(findings)}")
        for finding in findings:
            pids = f" (pids {', '.join(map(str, finding['pids']))})" if finding["pids"] else ""
            lines.append(f"  {finding['task_id'] or 'check'}: {finding['text']}{pids}")
    return "\n".join(lines)


def outbox_entries(pending: list[dict[str, Any]], failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outbox files as people may see them: the URL masked, the rest as it is."""
    from codexd.notify.redact import mask_url

    shown = []
    for state, entries in (("pending", pending), ("given up", failed)):
        for entry in entries:
            fields = ("task_id", "event", "attempts", "last_error", "reason")
            shown.append({"state": state, "url": mask_url(entry["url"]), **{k: entry.get(k) for k in fields}})
    return shown


def outbox_table(entries: list[dict[str, Any]]) -> str:
    lines = []
    for e in entries:
        why = e.get("reason") or e.get("last_error") or ""
        lines.append(
            f"{e['state']:<9} {e['task_id']}  {e['event']}  {e['url']}  attempts {e['attempts']}  {why}"
        )
    return "\n".join(line.rstrip() for line in lines)


def service_logs(manager: str, logs_dir: str) -> str:
    if manager == "systemd":
        return "journalctl --user -u codexd -f"
    return f"tail -f {logs_dir}/codexd.log"


def _yes(value: bool | None, unknown: str) -> str:
    return unknown if value is None else ("yes" if value else "no")


def service_report(found: dict[str, Any]) -> str:
    """`codexd service status`: the file, the manager's view, the daemon's own view."""
    kind = "systemd user unit" if found["manager"] == "systemd" else "launchd agent"
    if not found["installed"]:
        installed = "no: `codexd service install` writes and starts it"
    elif found["current"]:
        installed = "yes, up to date"
    else:
        installed = "yes, but out of date: run `codexd service install` again"
    unknown = "unknown (the service manager cannot be reached here)"
    daemon = found["daemon"]
    view = (
        f"running, pid {daemon['pid']}, {daemon['tasks_running']} task(s) running"
        if daemon["pid"]
        else "not running"
    )
    return "\n".join(
        [
            f"service:   {kind} {found['file']}",
            f"installed: {installed}",
            f"enabled:   {_yes(found['enabled'], unknown)}",
            f"running:   {_yes(found['running'], unknown)}",
            f"daemon:    {view}",
            f"logs:      {found['logs']}",
        ]
    )
