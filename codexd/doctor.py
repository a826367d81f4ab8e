"""`codexd doctor`: checks that say what is wrong and what to do about it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from codexd import intake, lock
from codexd.errors import CodexdError, ConfigError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # worth knowing, not a failure

    def line(self) -> str:
        mark = "warn" if self.warning else ("ok  " if self.ok else "FAIL")
        return f"{mark}  {self.name}: {self.detail}"


def check_codex(command: list[str]) -> Check:
    program = shutil.which(command[0])
    if program is None:
        return Check(
            "codex",
            False,
            f"{command[0]} not found: install it (npm install -g @openai/codex) or set codex.command",
        )
    try:
        done = subprocess.run(
            [*command, "--version"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("codex", False, f"{program} --version did not answer ({exc}): reinstall Codex")
    if done.returncode != 0:
        return Check(
            "codex", False, f"{program} --version exited {done.returncode}: {done.stderr.strip()[:200]}"
        )
    return Check("codex", True, f"{done.stdout.strip()} at {program}")


def check_folder(name: str, path: Path) -> Check:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            name, False, f"{path} is not usable ({exc.strerror}): fix its permissions or choose another"
        )
    return Check(name, True, str(path))


def check_spool(path: Path) -> Check:
    try:
        intake.ensure_private_dir(path)
    except (CodexdError, OSError) as exc:
        return Check("spool_dir", False, str(exc))
    return check_folder("spool_dir", path)


def check_daemon(tasks_dir: Path) -> Check:
    pid = lock.running_pid(tasks_dir)
    if pid is None:
        return Check("daemon", True, f"not running for {tasks_dir} (start it with `codexd daemon`)")
    return Check("daemon", True, f"running, pid {pid}")


def check_notify(entries: list[str]) -> Iterator[Check]:
    """Each notification URL: usable, or what is wrong with it. (`codexd notify test` sends.)"""
    from codexd import endpoints

    if not entries:
        yield Check("notify", True, "no notify.urls: no notices are sent (see the README to add some)")
    for entry in entries:
        endpoint = endpoints.parse(entry)
        found = endpoints.problem(endpoint.url)
        if found is None:
            yield Check("notify", True, f"{endpoint.shown} (try it: codexd notify test)")
        else:
            yield Check("notify", found.platform, f"{endpoint.shown}: {found.text}", warning=found.platform)


def run(config: str | None) -> Iterator[Check]:
    from codexd import settings

    try:
        loaded, path = settings.load(config)
    except ConfigError as exc:
        for problem in exc.problems:
            yield Check("settings", False, problem)
        return
    yield Check("settings", True, f"valid ({path}{'' if path.exists() else ', not present: defaults'})")
    yield check_codex(loaded.codex.command)
    yield check_folder("tasks_dir", loaded.tasks_dir)
    yield check_spool(loaded.spool_dir)
    yield check_daemon(loaded.tasks_dir)
    yield from check_notify([u.get_secret_value() for u in loaded.notify.urls])
    if os.environ.get("CODEXD_TASK_ID"):
        yield Check("environment", True, f"running inside task {os.environ['CODEXD_TASK_ID']}")
