"""Which way a task's process tree is kept together, chosen from (fake) /proc files; the
shim that puts Codex there; and what a recorded cgroup may be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from codexd.codex import containment, process
from codexd.errors import CodexdError
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(30)
HYBRID = "9:name=systemd:/\n4:memory:/x\n0::{path}\n"


def fake_proc(tmp_path: Path, own: str, mount_root: str = "/", *, procs: bool = True) -> tuple[Path, Path]:
    """A /proc/self with our cgroup `own` under a cgroup2 mount at tmp_path/cg (+ mount_root)."""
    proc, mount = tmp_path / "proc", tmp_path / "cg"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(HYBRID.format(path=own))
    (proc / "self" / "mountinfo").write_text(
        f"31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        f"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        f"41 31 0:38 {mount_root} {mount} rw,relatime - cgroup2 cgroup2 rw\n"
    )
    folder = mount / own[len(mount_root) :].lstrip("/") if own.startswith(mount_root) else mount
    folder.mkdir(parents=True, exist_ok=True)
    if procs:
        (folder / "cgroup.procs").write_text("")
    return proc, mount


def choose(
    proc: Path, setting: str = "auto", xattr: bool = False, scope: bool = False, platform: str = "linux"
):
    return containment.choose(
        setting, proc, has_xattr=lambda p, n: xattr, scope_probe=lambda: scope, platform=platform
    )


def test_the_namespace_root_is_delegated_a_container_or_a_host_root(tmp_path):
    proc, mount = fake_proc(tmp_path, "/")
    chosen = choose(proc)
    assert (chosen.mode, chosen.base, chosen.mount) == ("cgroup", mount, mount)
    assert chosen.shown == f"cgroup v2 (delegated {mount})"


def test_a_folder_systemd_delegated_is_used(tmp_path):
    proc, mount = fake_proc(tmp_path, "/user.slice/user@1000.service/app.slice/codexd.service")
    chosen = choose(proc, xattr=True)
    assert (
        chosen.mode == "cgroup"
        and chosen.base == mount / "user.slice/user@1000.service/app.slice/codexd.service"
    )


def test_a_bind_mounted_subtree_is_resolved_below_its_mount(tmp_path):
    proc, mount = fake_proc(tmp_path, "/docker/abc/sub", mount_root="/docker/abc")
    assert containment.own_cgroup(proc) == (mount / "sub", mount)


def test_a_terminal_session_takes_a_systemd_scope(tmp_path):
    proc, _ = fake_proc(tmp_path, "/user.slice/user-1000.slice/session-2.scope")
    chosen = choose(proc, scope=True)
    assert chosen.mode == "scope" and chosen.base is None and not chosen.subreaper


def test_without_cgroup_or_scope_the_daemon_is_a_subreaper_and_says_why(tmp_path):
    proc, _ = fake_proc(tmp_path, "/user.slice/user-1000.slice/session-2.scope")
    chosen = choose(proc)
    assert chosen.mode == "group" and chosen.subreaper
    assert "is not delegated to codexd" in chosen.shown and "no systemd user scope" in chosen.shown


def test_a_delegated_folder_we_cannot_write_is_not_used(tmp_path):
    proc, _ = fake_proc(tmp_path, "/", procs=False)
    chosen = choose(proc)
    assert chosen.mode == "group" and "is not writable by codexd" in chosen.shown


def test_cgroup_v1_only_has_no_cgroup_mode(tmp_path):
    proc, _ = fake_proc(tmp_path, "/")
    (proc / "self" / "cgroup").write_text("4:memory:/x\n1:name=systemd:/\n")
    assert "no cgroup v2 here" in choose(proc).shown


def test_a_forced_mode_is_taken_or_refused_with_one_line(tmp_path):
    proc, _ = fake_proc(tmp_path, "/a.scope")
    assert choose(proc, "group", xattr=True).mode == "group"
    with pytest.raises(CodexdError, match=r"'cgroup' cannot be had: .* is not delegated .*set process_trees"):
        choose(proc, "cgroup")
    with pytest.raises(CodexdError, match=r"'scope' cannot be had: `systemd-run --user --scope` failed"):
        choose(proc, "scope")
    assert choose(proc, "scope", scope=True).mode == "scope"


def test_macos_has_process_groups_only(tmp_path):
    chosen = choose(tmp_path, platform="darwin")
    assert chosen.mode == "group" and not chosen.subreaper and "no cgroups" in chosen.shown
    with pytest.raises(CodexdError, match="needs Linux"):
        choose(tmp_path, "cgroup", platform="darwin")


def test_a_scope_runs_the_shim_under_systemd_run(tmp_path):
    task_dir = tmp_path / "tasks" / "t1"
    unit = containment.unit_name(task_dir)
    launch = process.Launch("t1", task_dir, ["true", "exec"], tmp_path, 0, (), containment.Place(unit=unit))
    argv = process.contained_argv(launch, {"PATH": "/usr/bin:/bin"})
    scope = ["systemd-run", "--user", "--scope", "--quiet", "--collect", "--unit", unit, "--"]
    assert argv[: len(scope)] == scope and unit.startswith("codexd-t1-")
    assert argv[len(scope) :] == [
        sys.executable,
        "-I",
        "-S",
        "-c",
        process.SHIM,
        "",
        argv[-3],
        "true",
        "exec",
    ]
    assert Path(argv[-3]).name == "true"


def test_the_scope_cgroup_is_read_from_the_started_process(tmp_path):
    proc, mount = fake_proc(tmp_path, "/user.slice/session-2.scope")
    (proc / "42").mkdir()
    (proc / "42" / "cgroup").write_text("0::/user.slice/user@0.service/app.slice/codexd-t1-x.scope\n")
    found = containment.scope_cgroup(42, "codexd-t1-x", proc)
    assert found == mount / "user.slice/user@0.service/app.slice/codexd-t1-x.scope"


def test_a_recorded_cgroup_must_be_the_tasks_own_under_the_mount(tmp_path):
    mount = Path("/sys/fs/cgroup")
    task_dir = tmp_path / "tasks" / "t1"
    good = mount / "system.slice" / (containment.prefix(task_dir) + "ab12cd")
    assert containment.recorded(str(good), task_dir, mount) == good
    for bad in [
        "",
        None,
        str(mount),
        "/tmp/" + good.name,
        str(mount / "system.slice"),
        str(good) + "/../../init.scope",
        str(mount / (containment.prefix(tmp_path / "tasks" / "t2") + "ab12cd")),
        str(mount / (containment.prefix(tmp_path / "other" / "t1") + "ab12cd")),  # another daemon's
    ]:
        assert containment.recorded(bad, task_dir, mount) is None, bad


def shim(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-I", "-S", "-c", process.SHIM, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)


@pytest.mark.skipif(sys.platform != "linux", reason="the shim runs on Linux")
def test_the_shim_makes_codex_a_subreaper_with_its_own_pid():
    probe = "import ctypes,os; v=ctypes.c_int(); ctypes.CDLL(None).prctl(37,ctypes.byref(v),0,0,0); "
    probe += "print(v.value, os.getpid())"
    argv = [sys.executable, "-I", "-S", "-c", process.SHIM, "", sys.executable, "python3", "-c", probe]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=20)
    assert out == f"1 {proc.pid}\n" and proc.returncode == 0


@pytest.mark.skipif(sys.platform != "linux", reason="the shim runs on Linux")
def test_a_cgroup_the_shim_cannot_join_is_said_on_stderr_and_codex_runs_all_the_same(tmp_path):
    done = shim(str(tmp_path / "gone"), "/bin/echo", "echo", "ran")
    assert done.stdout == "ran\n"
    assert done.stderr.startswith(f"codexd: could not join cgroup {tmp_path / 'gone'} (No such file")


def test_a_missing_or_unrunnable_codex_is_named_before_the_shim_starts(tmp_path):
    with pytest.raises(process.LaunchError, match="no-such-codex not found: install Codex"):
        process.program("no-such-codex", {"PATH": str(tmp_path)}, tmp_path)
    (tmp_path / "codex").write_text("#!/bin/sh\n")
    with pytest.raises(process.LaunchError, match="codex is not executable"):
        process.program("codex", {"PATH": str(tmp_path)}, tmp_path)
    with pytest.raises(process.LaunchError, match="not found"):
        process.program("./missing", {}, tmp_path)
    later = tmp_path / "later"
    later.mkdir()
    (later / "codex").write_text("#!/bin/sh\n")
    (later / "codex").chmod(0o755)
    assert process.program("codex", {"PATH": f"{tmp_path}:{later}"}, tmp_path) == str(later / "codex")


@pytest.mark.skipif(
    containment.choose("auto", scope_probe=lambda: False).mode != "cgroup", reason="no cgroup"
)
def test_ending_a_cgroup_kills_all_in_it_and_removes_its_folder(tmp_path):
    base = containment.choose("auto", scope_probe=lambda: False).base
    assert base is not None
    folder = containment.make(base, tmp_path / "tasks" / "t1")
    try:
        script = "echo 0 > $0/cgroup.procs; setsid sh -c 'sleep 300 & sleep 300' & exec sleep 300"
        proc = subprocess.Popen(["sh", "-c", script, str(folder)])
        wait_for(lambda: len(containment.pids(folder)) >= 3, 10, "three sleepers in the cgroup")
        assert containment.end(folder) and not folder.exists()
        assert proc.wait(5) == -9
    finally:
        containment.end(folder)
