"""Starting one Codex run: its command line, its stdin, its cgroup, and the cursor that says
where its output begins (so a new daemon reads from there)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from codexd.codex import containment, process
from codexd.config.settings import CodexSettings
from codexd.daemon.processes import Child, Processes, end_cgroup
from codexd.tasks import intake, store, tasktypes, worktree
from codexd.tasks.records import TaskStatus


def start(
    processes: Processes,
    codex: CodexSettings,
    kind: tasktypes.TaskType,
    status: TaskStatus,
    task_dir: Path,
    resume: tuple[str, str] | None,
    now: datetime,
) -> tuple[Child, TaskStatus]:
    """Codex started for the task (resuming session `resume[0]` with prompt `resume[1]`, if
    given); the record says where this run's output begins (and the worktree it runs in)."""
    status = _in_worktree(status, task_dir)
    cwd = worktree.codex_cwd(status.worktree, status.cwd) if status.worktree else Path(status.cwd or task_dir)
    argv = process.exec_argv(
        codex.command,
        codex.args,
        task_dir=task_dir,
        cwd=cwd,
        login_shell=codex.login_shell,
        output_schema=kind.output_schema,
        resume=resume[0] if resume else None,
    )
    stdin_name, stdin_offset = _stdin(task_dir, resume, status)
    run_start = store.size_of(task_dir / store.EVENTS)
    stderr_start = store.size_of(task_dir / store.STDERR)
    end_cgroup(status, task_dir)  # what the last run left behind, before a new one starts
    place = containment.place(task_dir)
    try:
        launch = process.Launch(
            status.task_id, task_dir, argv, cwd, stdin_offset, tuple(codex.env), place, stdin_name
        )
        popen = processes.spawn(launch)
    except BaseException:
        if place.cgroup is not None:
            containment.remove(place.cgroup)
        raise
    cgroup = containment.settled(place, popen.pid)
    cursor = replace(
        status.daemon,
        run_start=run_start,
        stderr_start=stderr_start,
        pid_create_time=processes.create_time(popen.pid),
        resume=None,
        active_at=now.timestamp(),
        cgroup=str(cgroup) if cgroup else None,
    )
    return popen, status.with_(pid=popen.pid, daemon=cursor)


def _in_worktree(status: TaskStatus, task_dir: Path) -> TaskStatus:
    """A worktree task's worktree: made at its first launch, the same one for every run after."""
    if status.worktree is not None:
        worktree.reopen(status.worktree)
        return status
    if status.taken is None or not status.taken.worktree:
        return status
    made = worktree.create(status.task_id, Path(status.cwd or task_dir), task_dir, status.taken.base)
    return status.with_(worktree=made)


def _stdin(task_dir: Path, resume: tuple[str, str] | None, status: TaskStatus) -> tuple[str, int]:
    """Codex's stdin: the instructions' body, or a resumed session's prompt (a file of its own)."""
    if resume:
        store.write_atomic(task_dir / store.RESUME_PROMPT, resume[1].encode(), durable=False)
        return store.RESUME_PROMPT, 0
    # Where the body starts was recorded at intake; the file is checked again (never a link,
    # never read whole), and an older record without it is parsed as before.
    return store.INSTRUCTIONS, intake.body_offset(status, task_dir / store.INSTRUCTIONS)
