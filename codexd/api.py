"""The Python API, and the one the CLI and the dashboard are clients of.

Reads task files directly and imports nothing heavy, so quick commands stay quick.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codexd import jsonlines, tailing
from codexd.clock import iso, parse_iso
from codexd.config import limits, paths
from codexd.daemon import lock
from codexd.errors import BrokenRecord, CodexdError, InvalidInput, UnknownTask, WaitTimeout
from codexd.present import reports, vocabulary
from codexd.tailing import tail_lines
from codexd.tasks import frontmatter, intake, listing, removal, store, taskid, tasktypes, worktree
from codexd.tasks.records import LastLog, Progress, TaskStatus, Waiting
from codexd.tasks.removal import Removal
from codexd.tasks.states import RETRYABLE, TaskState
from codexd.tasks.store import TaskStore

Records = list[dict[str, Any]]  # status.json files, parsed (`Tasks.list` hides the builtin in the class)
Broken = list[BrokenRecord]  # the status files left out of a listing


class Tasks:
    """The tasks of one tasks folder (and the spool that feeds it)."""

    def __init__(self, tasks_dir: str | Path | None = None, config: str | Path | None = None):
        where = paths.resolve(config)
        self.root = paths.expand(tasks_dir) if tasks_dir else where.tasks_dir
        self.spool_dir = where.spool_dir
        self.type_names = set(tasktypes.BUILTIN) | set(where.type_names)
        self.store = TaskStore(self.root)
        self._config_file = where.config_file

    def daemon_pid(self) -> int | None:
        return lock.running_pid(self.root)

    def status(self, task_id: str) -> TaskStatus:
        return TaskStatus.from_dict(self.status_dict(task_id))

    def status_dict(self, task_id: str) -> dict[str, Any]:
        taskid.check(task_id)  # before any path is built from it: `../x` names no task
        try:
            return self.store.read_status_dict(task_id)
        except UnknownTask:
            for waiting in self.spooled():
                if waiting["task_id"] == task_id:
                    return waiting
            raise

    def spooled(self) -> Records:
        """The tasks waiting in the spool (no daemon has taken them in yet), each as a whole
        status.json record, `queued`: what `status` and `list` show of them."""
        found: dict[str, dict[str, Any]] = {}
        for name in self._waiting():
            record = self._spooled(self.spool_dir / name)
            found.setdefault(record["task_id"], record)
        return list(found.values())

    def _waiting(self) -> list[str]:
        return listing.waiting_in_spool(str(self.spool_dir))

    def _spooled(self, path: Path) -> dict[str, Any]:
        """A task waiting in the spool, as the daemon will record it when it takes the file in."""
        try:
            at = datetime.fromtimestamp(path.lstat().st_mtime, UTC)
            fields = frontmatter.parse(intake.read_instruction_file(path, follow=False)).fields
        except (InvalidInput, OSError):  # taken meanwhile, or one the daemon will refuse, saying why
            at, fields = datetime.now(UTC), {}
        task_id = str(fields.get("task_id") or taskid.from_name(path.name))
        timeout = fields.get("stall_timeout")
        return TaskStatus(
            task_id=task_id,
            type=str(fields.get("type", "generic")),
            status=TaskState.QUEUED,
            created_at=iso(at),
            updated_at=iso(at),
            log_file=str(self.store.file(task_id, store.PROGRESS)),
            stall_timeout=float(timeout) if timeout is not None else None,
            last_log=LastLog(iso(at), "waiting in the spool: no daemon has taken it in yet"),
            cwd=str(fields["cwd"]) if "cwd" in fields else None,
            incidents=(),
        ).to_dict()

    def list(self, broken: Broken | None = None) -> list[dict[str, Any]]:
        """Every task, newest first, those waiting in the spool too; one whose status.json is
        broken goes to `broken` (else a log line)."""
        found = self.store.all_statuses(broken)
        known = {record["task_id"] for record in found}
        return vocabulary.newest_first(found + [s for s in self.spooled() if s["task_id"] not in known])

    def list_as_written(self) -> bytes | None:
        """`list --json` as the daemon wrote the status files; None when it cannot be that (a file
        in another format, a task still in the spool): then `list()` is printed."""
        if self._waiting():
            return None
        return listing.json_array(listing.named_status_files(str(self.root)))

    def results(self, task_id: str) -> dict[str, Any] | None:
        self.status_dict(task_id)
        return self.store.read_results(task_id)

    def submit(self, raw: bytes, source_name: str, **overrides: Any) -> str:
        return intake.submit(
            raw,
            source_name,
            tasks=self.store,
            spool_dir=self.spool_dir,
            known_types=self.type_names,
            overrides=overrides,
            worktree_default=worktree.default_of(paths.read_toml(self._config_file, False), os.environ),
        )

    def request_stop(self, task_id: str) -> TaskStatus:
        status = self.status(task_id)
        if not status.is_terminal:
            self._request(task_id, "stop")
        return status

    def request_restart(self, task_id: str) -> TaskStatus:
        """Ask the daemon to kill the task's tree and resume its session now."""
        status = self.status(task_id)
        if status.is_terminal:
            raise InvalidInput(
                f"task {task_id} already {status.status.value}: only a running or stalled task can be "
                f"restarted; `codexd retry {task_id}` runs a failed or cancelled one again"
            )
        if not status.is_active:
            raise InvalidInput(
                f"task {task_id} is {status.status.value} and has not started: nothing to restart"
            )
        if self.daemon_pid() is None:
            raise CodexdError(
                f"no daemon is running for {self.root}: start `codexd daemon`; it resumes the task on its own"
            )
        self._request(task_id, "restart")
        return status

    def _request(self, task_id: str, kind: str, body: dict[str, Any] | None = None) -> None:
        """The request file: the time it was made, or a JSON object of what it carries."""
        taskid.check(task_id)  # the request file stays inside its folder
        folder = self.root / store.REQUESTS
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        made = iso(datetime.now(UTC))
        data = made.encode() if body is None else json.dumps({"at": made, **body}).encode()
        store.write_atomic(folder / f"{task_id}.{kind}", data)

    def wait(self, task_id: str, timeout: float | None = None, poll: float = 0.1) -> TaskStatus:
        """The task's status once it ends; WaitTimeout if it is still going after `timeout`."""
        return self.wait_until(task_id, lambda s: s.is_terminal, "to end", timeout, poll)

    def wait_until(
        self,
        task_id: str,
        done: Callable[[TaskStatus], bool],
        what: str,
        timeout: float | None = None,
        poll: float = 0.1,
    ) -> TaskStatus:
        if timeout is not None and not limits.is_duration(timeout):  # nan would wait for ever
            raise InvalidInput(f"timeout {timeout!r} is not seconds from 0 to {limits.MAX_SECONDS}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(task_id)
            if done(status):
                return status
            if deadline is not None and time.monotonic() >= deadline:
                state = status.status.value
                raise WaitTimeout(
                    f"task {task_id} is still {state} after {timeout:g} s of waiting for it {what}"
                )
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def report(self, task_id: str) -> dict[str, Any]:
        """Everything a report says about the task, as plain data (the JSON report)."""
        return self._report_of(self.status_dict(task_id))

    def _report_of(self, status: dict[str, Any]) -> dict[str, Any]:
        task_id = status["task_id"]
        return reports.build(status, self.store.read_results(task_id), self.store.dir(task_id))

    def aggregate(
        self,
        task_ids: Sequence[str] | None,
        since: datetime | None = None,
        broken: Broken | None = None,
    ) -> dict[str, Any]:
        """Totals over the named tasks (None: all of them but those in `broken`), then each one's report."""
        chosen = self.list(broken) if task_ids is None else self._named(task_ids)
        if since is not None:
            chosen = [s for s in chosen if parse_iso(s["created_at"]) >= since]
        return reports.aggregate((self._report_of(s) for s in chosen), since, datetime.now(UTC))

    def _named(self, task_ids: Sequence[str]) -> Records:
        """The status of each named task; every unknown id is named in one error."""
        found: Records = []
        unknown = []
        for task_id in dict.fromkeys(task_ids):
            try:
                found.append(self.status_dict(task_id))
            except UnknownTask:
                unknown.append(task_id)
        if unknown:
            raise InvalidInput(
                f"no task {', '.join(map(repr, unknown))} in {self.root}: `codexd list` shows the tasks"
            )
        return found

    def last_health_check(self) -> dict[str, Any] | None:
        """What the daemon's last periodic health check found."""
        try:
            return jsonlines.object_of((self.root / store.HEALTH).read_bytes())
        except OSError:
            return None

    def usage_limit(self, now: datetime | None = None) -> Waiting | None:
        """While the account's usage limit holds every task: why, and until when."""
        from codexd.daemon import usagelimit

        return usagelimit.account_wait(self.root, now or datetime.now(UTC))

    # -- day two: run an ended task again, remove ended tasks ---------------------------------

    def request_retry(self, task_id: str, fresh: bool = False, max_tokens: int | None = None) -> TaskStatus:
        """Ask the daemon to run a failed or cancelled task again under its id: resuming its
        Codex session, or from the start with `fresh` (or when it has none); with `max_tokens`,
        under that budget from now on (its tokens so far still count)."""
        status = self.status(task_id)
        if status.status not in RETRYABLE:
            raise InvalidInput(not_retryable(status))
        refusal = over_its_budget(status, max_tokens)
        if refusal is not None:
            raise InvalidInput(refusal)
        kind, other = ("retry-fresh", "retry") if fresh else ("retry", "retry-fresh")
        (self.root / store.REQUESTS / f"{task_id}.{other}").unlink(missing_ok=True)
        body = None if max_tokens is None else {"max_tokens": max_tokens}
        self._request(task_id, kind, body)
        return status

    def wait_taken(self, task_id: str, kind: str, timeout: float, poll: float = 0.1) -> TaskStatus:
        """The task's status once the daemon has acted on its request `kind` (and removed it)."""
        request = self.root / store.REQUESTS / f"{taskid.check(task_id)}.{kind}"
        deadline = time.monotonic() + timeout
        while os.path.lexists(request):
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"the daemon has not taken the {kind} request for task {task_id} after {timeout:g} s: "
                    "`codexd health` says whether it is running"
                )
            time.sleep(poll)
        return self.status(task_id)

    def remove(self, task_ids: Sequence[str], dry_run: bool = False) -> Removal:
        """`codexd rm`: each ended task's folder (and worktree) deleted; the others refused."""
        done = removal.Removal(self.store, dry_run)
        for task_id in dict.fromkeys(task_ids):
            done.take(task_id, self.status)
        return done

    def prune(self, older_than: float, dry_run: bool = False, broken: Broken | None = None) -> Removal:
        """`codexd prune`: every task that ended more than `older_than` seconds ago, removed."""
        cutoff = datetime.now(UTC).timestamp() - older_than
        old = {s.task_id: s for s in self.store.all_records(broken) if s.is_terminal}
        done = removal.Removal(self.store, dry_run)
        for task_id, status in old.items():
            if removal.ended_at(status).timestamp() <= cutoff:
                done.take(task_id, old.__getitem__)
        return done


class CodexTaskMonitor:
    """Watch one task from Python: `CodexTaskMonitor("my-task").wait_for_completion()`."""

    def __init__(self, task_id: str, tasks_dir: str | Path | None = None, config: str | Path | None = None):
        self.task_id = task_id
        self.tasks = Tasks(tasks_dir, config)
        self.tasks.status_dict(task_id)  # a clear UnknownTask now rather than later

    def get_status(self) -> TaskStatus:
        return self.tasks.status(self.task_id)

    def get_progress(self) -> Progress:
        return self.get_status().progress

    def get_results(self) -> dict[str, Any] | None:
        return self.tasks.results(self.task_id)

    def tail_logs(self, n: int = 20) -> list[str]:
        return tail_lines(self.tasks.store.file(self.task_id, store.PROGRESS), n, width=tailing.SHOWN_CHARS)

    def wait_for_completion(self, timeout: float | None = None) -> dict[str, Any]:
        """The task's results once it ends; TimeoutError if it is still going after `timeout`."""
        self.tasks.wait(self.task_id, timeout)
        return self.get_results() or {}

    def get_report(self) -> dict[str, Any]:
        """The task's report as data; `codexd.present.reports.render(report, "markdown")` formats it."""
        return self.tasks.report(self.task_id)

    def stop(self) -> TaskStatus:
        return self.tasks.request_stop(self.task_id)


def over_its_budget(status: TaskStatus, max_tokens: int | None) -> str | None:
    """Why a retry would stop at once: the task ended over its token budget, and the retry
    gives it none larger than what it used (tokens count over all its runs)."""
    used = status.usage.total_tokens if status.usage is not None else 0
    ended_over = (status.error or "").startswith("max_tokens ")
    if max_tokens is not None and max_tokens <= used:
        return (
            f"task {status.task_id} has used {used} tokens already: --max-tokens {max_tokens} would stop "
            f"it at once; give it more than {used}"
        )
    if ended_over and max_tokens is None:
        return (
            f"task {status.task_id} stopped at its token budget ({status.error}); a retry would stop at "
            f"once: give it a larger one with `codexd retry {status.task_id} --max-tokens N` (N > {used})"
        )
    return None


def not_retryable(status: TaskStatus) -> str:
    """Why `codexd retry` refuses the task: it did not end failed or cancelled."""
    task_id, state = status.task_id, status.status.value
    if status.status == TaskState.COMPLETED:
        return (
            f"task {task_id} completed: only a failed or cancelled task can be retried; "
            "submit it again with `codexd start` to run it once more"
        )
    if status.status == TaskState.QUEUED:
        return f"task {task_id} is queued and has not run yet: nothing to retry"
    return (
        f"task {task_id} is {state}: only a failed or cancelled task can be retried "
        f"(`codexd restart {task_id}` restarts a running one)"
    )


def check_reportable(task_dir: Path) -> None:
    """InvalidInput unless the task in `task_dir` has not ended: a progress report on an ended
    task would change nothing, so it is refused rather than silently dropped."""
    try:
        status = store.status_from((task_dir / store.STATUS).read_bytes())
    except (OSError, ValueError):
        raise InvalidInput(
            f"{task_dir} is not a codexd task folder: check CODEXD_TASK_DIR or --task"
        ) from None
    if status.is_terminal:
        raise InvalidInput(
            f"task {status.task_id} already {status.status.value}: progress is reported while a task "
            "runs; nothing recorded"
        )


def report_progress(task_dir: Path, report: dict[str, Any]) -> None:
    """Record one progress report for the daemon to apply (from inside the task)."""
    if not (task_dir / store.STATUS).is_file():
        raise InvalidInput(f"{task_dir} is not a codexd task folder: check CODEXD_TASK_DIR or --task")
    report = {"at": iso(datetime.now(UTC)), **report}
    store.append_line(task_dir / store.REPORTS, json.dumps(report, ensure_ascii=False))


def task_dir_from_env() -> Path | None:
    value = os.environ.get("CODEXD_TASK_DIR")
    return Path(value) if value else None
