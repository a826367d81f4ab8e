"""A grandchild that leaves the task's session and clears its environment (`setsid env -i`)
is still ended: by `stop`, at the task's end, and by a daemon started after a kill -9."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import sys
from pathlib import Path

import psutil
import pytest

from codexd.codex import containment
from tests.conftest import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]
LINUX = pytest.mark.skipif(sys.platform != "linux", reason="cgroups and subreapers are Linux's")

# A fake Codex whose tool command leaves a sleeper behind: out of the session, without the
# task's marker, its parent shell gone (so it is re-parented). Then it finishes or hangs.
ESCAPER = """#!{python}
import ctypes, os, subprocess, sys, time
print('{{"type":"thread.started","thread_id":"tree-%d"}}' % os.getpid(), flush=True)
print('{{"type":"turn.started"}}', flush=True)
if {unreap}:  # gives up being a subreaper: the sleeper goes to init, only a cgroup holds it
    ctypes.CDLL(None).prctl(36, 0, 0, 0, 0)
subprocess.run(["bash", "-c", "setsid env -i sleep {sleep} </dev/null >/dev/null 2>&1 &"], check=True)
if {finish}:
    print('{{"type":"item.completed","item":{{"type":"agent_message","text":"done"}}}}', flush=True)
    print('{{"type":"turn.completed","usage":{{"input_tokens":1,"output_tokens":1}}}}', flush=True)
    sys.exit(0)
time.sleep(600)
"""


def sleepers(arg: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.cmdline() == ["sleep", arg] and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


@pytest.fixture
def sleep_arg():
    """A sleep argument no other process has; whatever is left of it is killed at the end."""
    arg = f"600.{secrets.randbelow(10**9):09d}"
    yield arg
    for proc in sleepers(arg):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def task_cgroups(env, task_id: str) -> list[Path]:
    found = containment.own_cgroup()
    if found is None:
        return []
    return list(found[0].glob(containment.prefix(env.tasks / task_id) + "*"))


@pytest.fixture
def cgroups_cleaned(env):
    """Task cgroups a failing test left are removed (with what is in them)."""
    made: list[str] = []
    yield made
    for task_id in made:
        for folder in task_cgroups(env, task_id):
            containment.end(folder)


def escaper(env, sleep: str, mode: str, *, finish: bool = False, unreap: bool = False) -> None:
    script = env.root / "escaper"
    script.write_text(ESCAPER.format(python=sys.executable, sleep=sleep, finish=finish, unreap=unreap))
    script.chmod(0o755)
    env.set(
        CODEXD_CODEX__COMMAND=json.dumps([str(script)]),
        CODEXD_DAEMON__STOP_GRACE="1",
        CODEXD_PROCESS_TREES=mode,
    )


def start(env, task_id: str) -> None:
    done = env.codexd("start", "--instructions", "-", "--task-id", task_id, input=b"Do it.\n")
    assert done.returncode == 0, done.stderr


def cgroup_mode_here() -> bool:
    return containment.choose("auto", scope_probe=lambda: False).mode == "cgroup"


MODES = [
    pytest.param(
        "cgroup", marks=pytest.mark.skipif(not cgroup_mode_here(), reason="no delegated cgroup v2 here")
    ),
    "group",
]


def new_task_id(cgroups_cleaned: list[str]) -> str:
    task_id = f"tree-{secrets.token_hex(4)}"
    cgroups_cleaned.append(task_id)
    return task_id


def nothing_left(env, task_id: str, sleep_arg: str) -> None:
    wait_for(lambda: not sleepers(sleep_arg), 10, "the escaped sleeper ended")
    wait_for(lambda: not task_cgroups(env, task_id), 10, "the run's cgroup removed")


def stop_and_see_it_all_end(env, task_id: str, sleep_arg: str) -> None:
    stopped = env.codexd("stop", task_id)
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: env.status(task_id)["status"] == "cancelled", 20, "the task cancelled")
    nothing_left(env, task_id, sleep_arg)


@LINUX
@pytest.mark.parametrize("mode", MODES)
def test_stop_ends_a_setsid_env_i_grandchild(env, daemon, sleep_arg, cgroups_cleaned, mode):
    task_id = new_task_id(cgroups_cleaned)
    escaper(env, sleep_arg, mode)
    running = daemon()
    wait_for(lambda: f'"mode": "{mode}"' in running.output(), 10, f"the daemon's word on mode {mode}")
    start(env, task_id)
    wait_for(lambda: sleepers(sleep_arg), 20, "the escaped sleeper")
    if mode == "cgroup":
        assert env.status(task_id)["daemon"]["cgroup"], "the run's cgroup is recorded"
    stop_and_see_it_all_end(env, task_id, sleep_arg)


@LINUX
@pytest.mark.parametrize("mode", MODES)
def test_a_task_that_ends_leaves_no_process_behind(env, daemon, sleep_arg, cgroups_cleaned, mode):
    task_id = new_task_id(cgroups_cleaned)
    escaper(env, sleep_arg, mode, finish=True)
    running = daemon()
    start(env, task_id)
    wait_for(lambda: env.status(task_id)["status"] == "completed", 20, "the task completed")
    nothing_left(env, task_id, sleep_arg)
    if mode == "group":  # its Codex gone, the sleeper came back to the daemon, which ended it
        wait_for(lambda: "task.adopted_ended" in running.output(), 10, "the daemon's word on it")


@LINUX
@pytest.mark.skipif(not cgroup_mode_here(), reason="no delegated cgroup v2 here")
def test_stop_after_a_daemon_kill_ends_the_tree_by_its_cgroup(env, daemon, sleep_arg, cgroups_cleaned):
    task_id = new_task_id(cgroups_cleaned)
    escaper(env, sleep_arg, "cgroup", unreap=True)
    first = daemon()
    start(env, task_id)
    wait_for(lambda: sleepers(sleep_arg), 20, "the escaped sleeper")
    assert all(p.ppid() == 1 for p in sleepers(sleep_arg)), "the sleeper left the tree for init"
    wait_for(lambda: env.status(task_id)["daemon"]["cgroup"], 10, "the run's cgroup recorded")
    first.signal(signal.SIGKILL)
    first.proc.wait(10)
    daemon()
    stop_and_see_it_all_end(env, task_id, sleep_arg)


@LINUX
@pytest.mark.parametrize("mode", MODES)
def test_stall_recovery_ends_a_setsid_env_i_grandchild(env, daemon, sleep_arg, cgroups_cleaned, mode):
    task_id = new_task_id(cgroups_cleaned)
    escaper(env, sleep_arg, mode)
    env.set(CODEXD_HEALTH__STALL_TIMEOUT="1", CODEXD_HEALTH__MAX_RESTARTS="0")
    daemon()
    start(env, task_id)
    wait_for(lambda: sleepers(sleep_arg), 20, "the escaped sleeper")
    wait_for(lambda: env.status(task_id)["status"] == "failed", 30, "the task failed after its stall")
    nothing_left(env, task_id, sleep_arg)


def test_ending_a_tree_spares_a_process_of_the_task_started_after_it_began(tmp_path):
    """`codexd retry` right after `stop`: the stop's killer, still waiting out its grace for a
    child that ignores SIGTERM, must not take the next run for a straggler."""
    import os
    import subprocess
    import threading
    import time

    from codexd.codex import process

    task_dir = tmp_path / "tasks" / "t1"
    task_dir.mkdir(parents=True)
    env = {**os.environ, process.ENV_TASK_ID: "t1", process.ENV_TASK_DIR: str(task_dir)}
    old = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 60"], env=env, start_new_session=True)
    time.sleep(0.2)  # its trap is set
    killer = threading.Thread(target=process.kill_tree, args=(None, task_dir, 1.5))
    killer.start()
    time.sleep(0.3)
    new = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    try:
        killer.join(10)
        old.wait(5)  # the straggler: ended after its grace (its status reaped by the killer)
        assert new.poll() is None  # the next run lives on
    finally:
        for proc in (old, new):
            proc.kill()
            proc.wait()
