"""Codex processes: how one is started, recognised again, and stopped with its whole tree."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from codexd import agentenv, codexargs, store
from codexd.errors import CodexdError

ENV_TASK_ID = "CODEXD_TASK_ID"
ENV_TASK_DIR = "CODEXD_TASK_DIR"
CREATE_TIME_TOLERANCE = 1.0  # psutil follows wall-clock changes; allow a little slack


class LaunchError(CodexdError):
    """Codex could not be started at all."""


@dataclass(frozen=True)
class Launch:
    task_id: str
    task_dir: Path
    argv: list[str]
    cwd: Path
    stdin_offset: int | None  # the instructions' body starts here; None: a resume, no stdin
    env: tuple[str, ...] = ()  # codex.env: names passed beyond the allowlist


def codexd_bin_dir() -> Path | None:
    """The folder holding the `codexd` script, so the agent inside a task can run it."""
    beside = shutil.which("codexd", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("codexd")
    return Path(found).parent if found else None


def child_env(
    task_id: str, task_dir: Path, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Codex's environment: an allowlist (see agentenv), the task's own two, and `codexd` on PATH."""
    env = agentenv.for_agent(environ, extra)
    env[ENV_TASK_ID] = task_id
    env[ENV_TASK_DIR] = str(task_dir)
    bin_dir = codexd_bin_dir()
    if bin_dir is not None:
        env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", os.defpath)])
    return env


def exec_argv(
    command: list[str],
    args: list[str],
    *,
    task_dir: Path,
    cwd: Path,
    login_shell: bool,
    output_schema: Path | None,
    resume: tuple[str, str] | None = None,
) -> list[str]:
    """`codex exec --json ... -` (instructions on stdin), or with `resume`, the
    `codex exec --json ... resume <thread_id> <prompt>` that continues a recorded session.

    The user's `codex.args` come first, without what codexd passes itself (Codex refuses a
    flag given twice), so that an option taking several values (`-i a.png`) ends there.
    """
    # goals: nothing in exec's events. A default, so before the user's args: a later -c wins
    # (`--enable goals` wins wherever it stands).
    argv = [*command, "exec", "-c", "features.goals=false", *codexargs.merged(args, login_shell)]
    argv += ["--json", "--skip-git-repo-check", "-C", str(cwd), "-o", str(task_dir / store.LAST_MESSAGE)]
    if not login_shell:
        argv += ["-c", f"{codexargs.LOGIN_SHELL_KEY}=false"]
    if output_schema is not None:
        argv += ["--output-schema", str(output_schema)]
    tail = ["resume", *resume] if resume else ["-"]
    return [*argv, *tail]


def check_cwd(cwd: Path) -> None:
    """The folder Codex is to work in, checked before starting it: a missing folder is not
    a missing Codex (Popen says FileNotFoundError for both)."""
    try:
        info = cwd.stat()
    except FileNotFoundError:
        raise LaunchError(
            f"the task's folder {cwd} no longer exists: create it again, or submit the task again "
            "with an existing --cwd"
        ) from None
    except OSError as exc:
        raise LaunchError(
            f"cannot reach {cwd} (the task's folder): {exc.strerror or exc}: fix its path"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise LaunchError(
            f"the task's folder {cwd} is not a folder: submit the task again with a folder as --cwd"
        )
    if not os.access(cwd, os.R_OK | os.X_OK):
        raise LaunchError(
            f"cannot enter {cwd} (the task's folder): permission denied: give your user access "
            f"(chmod u+rx {cwd})"
        )


def spawn(launch: Launch) -> subprocess.Popen[bytes]:
    """Start Codex in its own session; its output goes to the task's files, not through us."""
    task_dir = launch.task_dir
    check_cwd(launch.cwd)
    with contextlib.suppress(FileNotFoundError):
        (task_dir / store.LAST_MESSAGE).unlink()  # so a stale answer is never taken for this run's
    # A resume gets its prompt as an argument; stdin is then empty and closed.
    instructions = task_dir / store.INSTRUCTIONS if launch.stdin_offset is not None else os.devnull
    with (
        open(instructions, "rb") as stdin,
        store.open_append(task_dir / store.EVENTS) as stdout,  # never through a planted link
        store.open_append(task_dir / store.STDERR) as stderr,
    ):
        stdin.seek(launch.stdin_offset or 0)
        try:
            return subprocess.Popen(
                launch.argv,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                cwd=launch.cwd,
                env=child_env(launch.task_id, task_dir, launch.env),
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise LaunchError(
                f"{launch.argv[0]} not found: install Codex (npm install -g @openai/codex) "
                "or set codex.command to its path"
            ) from None
        except PermissionError:
            raise LaunchError(f"{launch.argv[0]} is not executable: fix codex.command") from None


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def find(pid: int | None, started: float | None, task_id: str) -> psutil.Process | None:
    """The task's live Codex process, or None: never a recycled pid or a zombie."""
    if pid is None or started is None:
        return None
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > CREATE_TIME_TOLERANCE:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        with contextlib.suppress(psutil.AccessDenied):
            if proc.environ().get(ENV_TASK_ID) != task_id:
                return None
        return proc
    except psutil.Error:
        return None


def processes_by_task(tasks_root: Path) -> dict[str, list[psutil.Process]]:
    """Every live process of a task in `tasks_root` (found by its environment), by task id.

    Zombies are left out: they are already dead. Tasks of another tasks folder are too.
    """
    found: dict[str, list[psutil.Process]] = {}
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            env = proc.environ()
            task_dir = env.get(ENV_TASK_DIR)
            if not task_dir or Path(task_dir).parent != tasks_root:
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.setdefault(env.get(ENV_TASK_ID) or Path(task_dir).name, []).append(proc)
        except psutil.Error:
            continue
    return found


def root_of(procs: list[psutil.Process]) -> psutil.Process | None:
    """The one process of a task's tree whose parent is not in it; None if that is unclear."""
    pids = {p.pid for p in procs}
    roots = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.ppid() not in pids:
                roots.append(proc)
    return roots[0] if len(roots) == 1 else None


def _tree(root: psutil.Process | None, task_dir: Path) -> set[psutil.Process]:
    procs: set[psutil.Process] = set()
    if root is not None:
        with contextlib.suppress(psutil.Error):
            procs |= {root, *root.children(recursive=True)}
    # Descendants that left the tree (re-parented to init) still carry the task's folder.
    procs |= set(processes_by_task(task_dir.parent).get(task_dir.name, []))
    return procs


def _signal(procs: Iterable[psutil.Process], kill: bool) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill() if kill else proc.terminate()


def kill_tree(root: psutil.Process | None, task_dir: Path, grace: float) -> list[psutil.Process]:
    """SIGTERM the task's whole tree, SIGKILL what is left after `grace`; returns survivors."""
    procs = _tree(root, task_dir)
    _signal(procs, kill=False)
    _, alive = psutil.wait_procs(procs, timeout=grace)
    leftovers = set(alive) | _tree(None, task_dir)
    _signal(leftovers, kill=True)
    _, survivors = psutil.wait_procs(leftovers, timeout=2)
    return list(survivors)
