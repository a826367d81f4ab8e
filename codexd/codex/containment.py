"""Where a task's processes are kept so that all of them can be ended: a cgroup v2 folder of
its own (delegated to us, or a systemd user scope), or, where neither can be had, a process
group with the daemon as child subreaper (orphans come back to it).

The mode is chosen once at daemon start (`setup`); the rest of the daemon asks `current()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil
import structlog

from codexd.codex import agentenv
from codexd.errors import CodexdError

Mode = Literal["cgroup", "scope", "group"]
PR_SET_CHILD_SUBREAPER = 36
PREFIX = "codexd-"
DELEGATE_XATTRS = ("trusted.delegate", "user.delegate")  # set by systemd on Delegate=yes units
SCOPE_PROBE = ["systemd-run", "--user", "--scope", "--quiet", "--collect", "true"]
SCOPE_FOUND_WAIT = 2.0  # seconds systemd-run may take to move a new Codex into its scope
EMPTY_WAIT = 2.0  # seconds a killed cgroup may take to empty before its folder is removed
log = structlog.get_logger()


@dataclass(frozen=True)
class Containment:
    mode: Mode
    shown: str  # one line for the log and `doctor`
    base: Path | None = None  # "cgroup": the delegated folder task cgroups are made in
    mount: Path | None = None  # the cgroup2 mount: every recorded cgroup must lie under it
    subreaper: bool = False  # "group": the daemon adopts orphans and ends them


@dataclass(frozen=True)
class Place:
    """Where one run of a task is put: a cgroup made for it, or a scope systemd makes."""

    cgroup: Path | None = None
    unit: str | None = None


NOWHERE = Place()


class _Choice:
    made = Containment("group", "process group + marker scan")  # until setup() (tests, tools)


def current() -> Containment:
    return _Choice.made


def setup(setting: str) -> Containment:
    """Choose the mode for this daemon (once, at start), and make it a subreaper if needed."""
    chosen = choose(setting)
    if chosen.subreaper and not set_subreaper():
        chosen = Containment("group", "process group + marker scan (no subreaper here)")
    _Choice.made = chosen
    return chosen


# -- choosing ------------------------------------------------------------------------------


def own_cgroup(proc: Path = Path("/proc")) -> tuple[Path, Path] | None:
    """(our cgroup v2 folder, the cgroup2 mount) from /proc/self, or None without cgroup v2."""
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
        mounts = (proc / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:
        return None
    for line in mounts:
        fields, _, tail = line.partition(" - ")
        parts = fields.split()
        if tail.split()[:1] != ["cgroup2"] or len(parts) < 5:
            continue
        root, mount = parts[3], Path(parts[4])
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return mount / path[len(root) :].lstrip("/"), mount
    return None


def _has_xattr(path: Path, name: str) -> bool:
    try:
        os.getxattr(path, name)
    except (OSError, AttributeError):
        return False
    return True


def delegated(folder: Path, mount: Path, has_xattr: Callable[[Path, str], bool] = _has_xattr) -> bool:
    """Ours to divide: the namespace root (a container), or a folder systemd delegated."""
    return folder == mount or any(has_xattr(folder, name) for name in DELEGATE_XATTRS)


def writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK) and os.access(folder / "cgroup.procs", os.W_OK)


def scope_works() -> bool:
    if sys.platform != "linux" or shutil.which(SCOPE_PROBE[0]) is None:
        return False
    try:
        # With the agent's environment, as Codex's systemd-run will have it (it finds the bus
        # by XDG_RUNTIME_DIR).
        env = agentenv.for_agent(None, ())
        done = subprocess.run(SCOPE_PROBE, capture_output=True, timeout=10, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _cgroup_mode(proc: Path, has_xattr: Callable[[Path, str], bool]) -> Containment | str:
    found = own_cgroup(proc)
    if found is None:
        return "no cgroup v2 here"
    folder, mount = found
    if not delegated(folder, mount, has_xattr):
        return f"{folder} is not delegated to codexd"
    if not writable(folder):
        return f"{folder} is not writable by codexd"
    return Containment("cgroup", f"cgroup v2 (delegated {folder})", base=folder, mount=mount)


def choose(
    setting: str,
    proc: Path = Path("/proc"),
    has_xattr: Callable[[Path, str], bool] = _has_xattr,
    scope_probe: Callable[[], bool] = scope_works,
    platform: str = sys.platform,
) -> Containment:
    """The first mode that can be had here, in the order cgroup, scope, group; or the one the
    setting forces (refused with one line where it cannot be had)."""
    if platform != "linux":
        if setting in ("cgroup", "scope"):
            raise CodexdError(f"process_trees = {setting!r} needs Linux: set process_trees to auto or group")
        return Containment("group", "process group + marker scan (no cgroups on this system)")
    why_not = ""
    if setting in ("auto", "cgroup"):
        mode = _cgroup_mode(proc, has_xattr)
        if isinstance(mode, Containment):
            return mode
        why_not = mode
        if setting == "cgroup":
            raise CodexdError(f"process_trees = 'cgroup' cannot be had: {why_not}: set process_trees to auto")
    if setting in ("auto", "scope"):
        if scope_probe():
            return Containment("scope", "systemd user scope per task (systemd-run --user --scope)")
        if setting == "scope":
            raise CodexdError(
                "process_trees = 'scope' cannot be had: `systemd-run --user --scope` failed: "
                "set process_trees to auto"
            )
        why_not = f"{why_not}; no systemd user scope" if why_not else "no systemd user scope"
    shown = "process group + subreaper" + (f" ({why_not})" if why_not else "")
    return Containment("group", shown, subreaper=True)


def doctor_line(setting: str) -> tuple[bool, str]:
    """`codexd doctor`'s line: how a daemon started from here keeps each task's tree together."""
    try:
        chosen = choose(setting)
    except CodexdError as exc:
        return False, str(exc)
    return True, f"{chosen.shown}, for a daemon started here (a daemon's log: daemon.process_trees)"


def set_subreaper() -> bool:
    """Make this process a child subreaper (Linux): orphans of its descendants come back to it."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


# -- a task's cgroup -----------------------------------------------------------------------


def prefix(task_dir: Path) -> str:
    """What the names of a task's cgroups begin with: its id and its tasks folder's (two
    daemons may run tasks of the same id in one cgroup)."""
    return f"{PREFIX}{task_dir.name}-{folder_key(task_dir.parent)}-"


def folder_key(tasks_root: Path) -> str:
    return hashlib.sha256(os.fsencode(tasks_root)).hexdigest()[:6]


def unit_name(task_dir: Path) -> str:
    return prefix(task_dir) + secrets.token_hex(3)


def make(base: Path, task_dir: Path) -> Path:
    """A new, empty cgroup folder for one run of a task."""
    folder = base / unit_name(task_dir)
    folder.mkdir(mode=0o755)
    return folder


def place(task_dir: Path) -> Place:
    """Where the next run of the task goes (a cgroup that cannot be made: logged, no cgroup)."""
    chosen = current()
    if chosen.mode == "scope":
        return Place(unit=unit_name(task_dir))
    if chosen.mode == "cgroup" and chosen.base is not None:
        try:
            return Place(cgroup=make(chosen.base, task_dir))
        except OSError as exc:
            log.warning("task.no_cgroup", task_id=task_dir.name, base=str(chosen.base), error=str(exc))
    return NOWHERE


def settled(where: Place, pid: int) -> Path | None:
    """The cgroup a started run is in, to be recorded with its pid."""
    if where.unit is not None:
        return scope_cgroup(pid, where.unit)
    return where.cgroup


def scope_prefix(unit: str) -> list[str]:
    return ["systemd-run", "--user", "--scope", "--quiet", "--collect", "--unit", unit, "--"]


def cgroup_of(pid: int, mount: Path | None = None, proc: Path = Path("/proc")) -> Path | None:
    found = own_cgroup(proc) if mount is None else (mount, mount)
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None or found is None:
        return None
    return found[1] / path.lstrip("/")


def scope_cgroup(pid: int, unit: str, proc: Path = Path("/proc")) -> Path | None:
    """The cgroup systemd-run put `pid` in (it moves itself before it runs the shim)."""
    deadline = time.monotonic() + SCOPE_FOUND_WAIT
    while True:
        found = own_cgroup(proc)
        folder = cgroup_of(pid, found[1] if found else None, proc)
        if folder is not None and folder.name == f"{unit}.scope":
            return folder
        if folder is None or time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def recorded(path: str | None, task_dir: Path, mount: Path | None = None) -> Path | None:
    """A cgroup recorded in status.json, if it is plausibly this task's: under the cgroup2
    mount and named for the task. A planted record never makes us kill anything else."""
    if not path:
        return None
    mount = mount or current().mount or _mount()
    folder = Path(os.path.normpath(path))
    if mount is None or not folder.is_relative_to(mount) or folder == mount:
        return None
    return folder if folder.name.startswith(prefix(task_dir)) else None


def _mount() -> Path | None:
    found = own_cgroup()
    return found[1] if found else None


def of_task(task_dir: Path, also: Path | None = None) -> list[Path]:
    """The task's cgroups: the recorded one and any left in our base folder."""
    found = [also] if also is not None else []
    base = current().base
    if base is not None:
        with contextlib.suppress(OSError):
            found += [p for p in base.glob(prefix(task_dir) + "*") if p.is_dir() and p not in found]
    return found


def pids(folder: Path) -> list[int]:
    """Every process in the cgroup and its sub-cgroups (an agent may make some)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for sub, _, _ in os.walk(folder):
            with contextlib.suppress(OSError):
                found += [int(p) for p in (Path(sub) / "cgroup.procs").read_text().split()]
    return found


def signal_all(folder: Path, signum: int) -> None:
    for pid in pids(folder):
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def end(folder: Path) -> bool:
    """SIGKILL everything in the cgroup and remove its folder; True when it is gone."""
    if not folder.is_dir():
        return True
    with contextlib.suppress(OSError):
        (folder / "cgroup.kill").write_text("1")  # kernel >= 5.14: the whole subtree at once
    deadline = time.monotonic() + EMPTY_WAIT
    while pids(folder) and time.monotonic() < deadline:
        signal_all(folder, signal.SIGKILL)  # also the fallback for kernels without cgroup.kill
        time.sleep(0.01)
    return remove(folder)


def remove_if_empty(folder: Path) -> None:
    """A run's cgroup, once Codex has exited and left nothing in it (else its end takes it)."""
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def remove(folder: Path) -> bool:
    """rmdir the cgroup and the folders inside it, deepest first (a live one stays)."""
    for sub, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        for _ in range(50):
            try:
                os.rmdir(sub)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    break
                time.sleep(0.01)  # its last process is still exiting
    return not folder.exists()


# -- orphans that came back to a subreaper daemon -----------------------------------------


def adopted(spawned: set[int]) -> list[psutil.Process]:
    """The daemon's children it did not start: orphans of Codex trees, back to a subreaper."""
    if not current().subreaper:
        return []
    try:
        return [c for c in psutil.Process().children() if c.pid not in spawned]
    except psutil.Error:
        return []


def end_adopted(adopted: list[psutil.Process]) -> list[int]:
    """End and reap them, by their own pids only: waitpid(-1) would take a Popen child's status."""
    for child in adopted:
        with contextlib.suppress(psutil.Error):
            for proc in [*child.children(recursive=True), child]:
                proc.kill()
    deadline = time.monotonic() + EMPTY_WAIT
    for child in adopted:
        while time.monotonic() < deadline:
            try:
                if os.waitpid(child.pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.01)
    return [c.pid for c in adopted]
