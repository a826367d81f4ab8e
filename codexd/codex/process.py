"""Codex processes: how one is started, recognised again, and stopped with its whole tree."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psutil
import structlog

from codexd.codex import agentenv, cmdline, containment
from codexd.errors import CodexdError
from codexd.tasks import store

ENV_TASK_ID = "CODEXD_TASK_ID"
ENV_TASK_DIR = "CODEXD_TASK_DIR"
log = structlog.get_logger()
CREATE_TIME_TOLERANCE = 1.0  # psutil follows wall-clock changes; allow a little slack
# Started in front of Codex on Linux (argv: cgroup or "", file, Codex's argv): joins the task's
# cgroup before anything else runs, so every descendant is inside; becomes a child subreaper,
# which survives exec, so Codex adopts its orphans (a `setsid env -i` grandchild stays in its
# tree); then becomes Codex itself, same pid, same environment.
SHIM = """import os, sys
cgroup, file, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if cgroup:
    try:
        with open(cgroup + "/cgroup.procs", "w") as procs:
            procs.write("0")
    except OSError as exc:
        sys.stderr.write(f"codexd: could not join cgroup {cgroup} ({exc.strerror}); "
                         "the task's processes are ended by process group instead\\n")
try:
    import ctypes
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
except Exception:
    pass
os.execv(file, argv)
"""
_spawn_lock = threading.Lock()  # a child is recorded as ours before anyone may take it for an orphan
_spawned: set[int] = set()  # pids of the Codex processes this daemon started


class LaunchError(CodexdError):
    """Codex could not be started at all."""


@dataclass(frozen=True)
class Launch:
    task_id: str
    task_dir: Path
    argv: list[str]
    cwd: Path
    stdin_offset: int  # Codex reads its prompt from stdin: the file `stdin_name`, from here on
    env: tuple[str, ...] = ()  # codex.env: names passed beyond the allowlist
    place: containment.Place = containment.NOWHERE  # the cgroup or scope it runs in
    stdin_name: str = store.INSTRUCTIONS  # a resume: store.RESUME_PROMPT


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
    resume: str | None = None,
) -> list[str]:
    """`codex exec --json ... -`, or with `resume` (a thread id), the `codex exec --json ...
    resume <thread_id> -` that continues a recorded session. The prompt always comes on
    stdin: a command line is public (/proc/<pid>/cmdline) and one argument is capped.

    The user's `codex.args` come first, without what codexd passes itself (Codex refuses a
    flag given twice), so that an option taking several values (`-i a.png`) ends there.
    """
    # goals: nothing in exec's events. A default, so before the user's args: a later -c wins
    # (`--enable goals` wins wherever it stands).
    argv = [*command, "exec", "-c", "features.goals=false", *cmdline.merged(args, login_shell)]
    argv += ["--json", "--skip-git-repo-check", "-C", str(cwd), "-o", str(task_dir / store.LAST_MESSAGE)]
    if not login_shell:
        argv += ["-c", f"{cmdline.LOGIN_SHELL_KEY}=false"]
    if output_schema is not None:
        argv += ["--output-schema", str(output_schema)]
    tail = ["resume", resume, "-"] if resume else ["-"]
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


def program(argv0: str, env: Mapping[str, str], cwd: Path) -> str:
    """The file exec would run for `argv0`, looked up as Popen would (the shim execs it)."""
    if "/" in argv0:
        found: str | None = str(cwd / argv0)
        if not Path(str(found)).exists():
            found = None
    else:  # the first executable on PATH, as exec finds it; else a file it would refuse
        search = env.get("PATH", os.defpath)
        found = shutil.which(argv0, path=search) or shutil.which(argv0, mode=os.F_OK, path=search)
    if found is None or Path(found).is_dir():
        raise LaunchError(
            f"{argv0} not found: install Codex (npm install -g @openai/codex) "
            "or set codex.command to its path"
        )
    if not os.access(found, os.X_OK):
        raise LaunchError(f"{argv0} is not executable: fix codex.command")
    return found


def contained_argv(launch: Launch, env: Mapping[str, str]) -> list[str]:
    """Codex's argv behind the shim (Linux), and behind systemd-run in a scope."""
    if sys.platform != "linux":
        return launch.argv
    file = program(launch.argv[0], env, launch.cwd)
    place = launch.place
    scope = containment.scope_prefix(place.unit) if place.unit else []
    shim = [sys.executable, "-I", "-S", "-c", SHIM, str(place.cgroup or ""), file]
    return [*scope, *shim, *launch.argv]


def spawn(launch: Launch) -> subprocess.Popen[bytes]:
    """Start Codex in its own session; its output goes to the task's files, not through us."""
    task_dir = launch.task_dir
    check_cwd(launch.cwd)
    with contextlib.suppress(FileNotFoundError):
        (task_dir / store.LAST_MESSAGE).unlink()  # so a stale answer is never taken for this run's
    env = child_env(launch.task_id, task_dir, launch.env)
    argv = contained_argv(launch, env)
    with (
        _stdin(task_dir / launch.stdin_name, launch.stdin_offset) as stdin,
        store.open_append(task_dir / store.EVENTS) as stdout,  # never through a planted link
        store.open_append(task_dir / store.STDERR) as stderr,
        _spawn_lock,
    ):
        try:
            popen = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                cwd=launch.cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise LaunchError(
                f"{argv[0]} not found: install Codex (npm install -g @openai/codex) "
                "or set codex.command to its path"
            ) from None
        except PermissionError:
            raise LaunchError(f"{argv[0]} is not executable: fix codex.command") from None
        _spawned.add(popen.pid)
        return popen


def _stdin(path: Path, offset: int) -> BinaryIO:
    stdin = store.open_read(path)  # never through a planted link
    stdin.seek(offset)
    return stdin


def forget(pid: int) -> None:
    """A Codex process this daemon started was reaped: its pid may now be anyone's."""
    with _spawn_lock:
        _spawned.discard(pid)


def end_adopted() -> list[int]:
    """End the orphans that came back to a subreaper daemon (see containment.end_adopted)."""
    with _spawn_lock:
        adopted = containment.adopted(_spawned)
    return containment.end_adopted(adopted)


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


def _members(cgroups: Iterable[Path]) -> set[psutil.Process]:
    procs: set[psutil.Process] = set()
    for folder in cgroups:
        for pid in containment.pids(folder):
            with contextlib.suppress(psutil.Error):
                procs.add(psutil.Process(pid))
    return procs


def _process_clock() -> float:
    """Now, on the clock of psutil's create_time(): on Linux that is the boot time (whole
    seconds) plus ticks since boot, so time.time() could be up to a second off from it."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        return psutil.boot_time() + time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.time()


def _older(proc: psutil.Process, than: float) -> bool:
    try:
        return proc.create_time() <= than + 0.05  # a clock tick or so
    except psutil.Error:
        return False


def kill_tree(
    root: psutil.Process | None, task_dir: Path, grace: float, cgroup: Path | None = None
) -> list[psutil.Process]:
    """SIGTERM the task's whole tree (and all in its cgroups), SIGKILL what is left after
    `grace`, and remove the cgroups; returns survivors."""
    began = _process_clock()
    cgroups = containment.of_task(task_dir, cgroup)
    procs = _tree(root, task_dir) | _members(cgroups)
    _signal(procs, kill=False)
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for folder in cgroups:
        if not containment.end(folder):
            log.warning("task.cgroup_left", task_id=task_dir.name, cgroup=str(folder))
    # Stragglers are older than this kill: a process of the task started since then belongs
    # to its next run (`codexd retry` right after `stop`), never to the tree being ended.
    leftovers = set(alive) | {p for p in _tree(None, task_dir) if _older(p, began)}
    _signal(leftovers, kill=True)
    _, survivors = psutil.wait_procs(leftovers, timeout=2)
    return list(survivors)
