"""`codexd doctor`: checks that say what is wrong and what to do about it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from codexd.daemon import lock
from codexd.errors import CodexdError, ConfigError
from codexd.tasks import folders, store

WITHHELD_SHOWN = 8  # names of withheld variables doctor shows


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


def check_codex_args(command: list[str], args: list[str], login_shell: bool) -> Check:
    """The installed Codex takes the command line codexd would give it (no model is asked)."""
    from codexd.codex import probe

    shown = " ".join(args) if args else "(none)"
    try:
        said = probe.parse_error(command, args, login_shell)
        said = said or probe.start_error(command, args, login_shell)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("codex.args", False, f"{command[0]} exec did not answer ({exc}): reinstall Codex")
    if said is None:
        return Check("codex.args", True, f"{shown}: accepted by Codex")
    return Check("codex.args", False, f"Codex refuses {shown}: {said}: fix codex.args")


def check_folder(name: str, path: Path) -> Check:
    try:
        folders.ensure_private(path, name)
    except CodexdError as exc:
        return Check(name, False, str(exc))
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            name, False, f"{path} is not usable ({exc.strerror}): fix its permissions or choose another"
        )
    return Check(name, True, str(path))


def check_tasks_dir(path: Path) -> Check:
    """tasks_dir, and the requests folder inside it that `stop` and `restart` write into."""
    found = check_folder("tasks_dir", path)
    if found.ok:
        try:
            folders.ensure_private(path / store.REQUESTS, "its requests folder")
        except CodexdError as exc:
            return Check("tasks_dir", False, str(exc))
    return found


def check_spool(path: Path, tasks_dir: Path) -> Check:
    found = check_folder("spool_dir", path)
    holder = lock.spool_holder(path)
    if not found.ok or holder is None or holder.tasks_dir == os.path.realpath(tasks_dir):
        return found
    fix = "give each tasks_dir its own spool_dir"
    why = f"{path} is taken by the daemon pid {holder.pid} of tasks_dir {holder.tasks_dir}: {fix}"
    return Check("spool_dir", False, why)


def check_settings_file(path: Path, secrets: bool) -> Iterator[Check]:
    """Notification URLs are secrets: a settings file holding them is for its owner's eyes."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if secrets and mode & (stat.S_IRGRP | stat.S_IROTH):
        why = f"{path} is readable by others and holds notification URLs (secrets)"
        yield Check("settings file", True, f"{why}: run `chmod 600 {path}`", warning=True)


def check_daemon(tasks_dir: Path) -> Check:
    pid = lock.running_pid(tasks_dir)
    if pid is None:
        return Check("daemon", True, f"not running for {tasks_dir} (start it with `codexd daemon`)")
    return Check("daemon", True, f"running, pid {pid}")


def check_notify(entries: list[str]) -> Iterator[Check]:
    """Each notification URL: usable, or what is wrong with it. (`codexd notify test` sends.)"""
    from codexd.notify import endpoints

    if not entries:
        yield Check("notify", True, "no notify.urls: no notices are sent (see the README to add some)")
    for endpoint, found in endpoints.judge(entries):
        if found is None:
            yield Check("notify", True, f"{endpoint.shown} (try it: codexd notify test)")
        else:
            yield Check("notify", found.platform, f"{endpoint.shown}: {found.text}", warning=found.platform)


def check_login(command: list[str]) -> Check:
    """Codex needs a login (or an API key) to reach its model."""
    try:
        done = subprocess.run(
            [*command, "login", "status"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return Check("codex login", False, "`codex login status` did not answer: reinstall Codex")
    said = (done.stdout or done.stderr).strip().splitlines()
    if done.returncode == 0:
        return Check("codex login", True, said[-1] if said else "logged in")
    key = provider_key()
    if key and os.environ.get(key):
        why = f"not logged in, but ${key} is set here (a service does not see your shell's variables)"
        return Check("codex login", True, why, warning=True)
    return Check("codex login", False, "Codex is not logged in: run `codex login` (tasks fail without it)")


def provider_key() -> str | None:
    """The environment variable Codex's configured model provider reads its key from."""
    home = Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")
    try:
        config = tomllib.loads((home / "config.toml").read_text())
    except (OSError, ValueError):
        return "OPENAI_API_KEY"
    provider = config.get("model_provider") or "openai"
    found = (config.get("model_providers") or {}).get(provider) or {}
    return str(found.get("env_key") or "OPENAI_API_KEY")


def check_agent_env(extra: list[str]) -> Iterator[Check]:
    """What of this environment a task's Codex would see: names only, never values."""
    from codexd.codex import agentenv

    passed, withheld = agentenv.split(os.environ, extra)
    few = ", ".join(withheld[:WITHHELD_SHOWN]) + (", ..." if len(withheld) > WITHHELD_SHOWN else "")
    yield Check("agent env", True, f"passes {', '.join(sorted(passed)) or '(nothing)'}")
    shown = f" ({few})" if few else ""
    yield Check("agent env", True, f"withholds {len(withheld)}{shown}; pass more by name with codex.env")
    unset = [name for name in extra if name not in os.environ]
    if unset:
        yield Check("agent env", True, f"codex.env names {', '.join(unset)}, not set here", warning=True)


def check_service(config: str | None, codex: str, stop_timeout: float) -> Iterator[Check]:
    """The installed unit or agent: present, current, and able to find codex and node."""
    from codexd.cli import service
    from codexd.config import paths

    unit = service.plan(service.default_manager(), paths.named_config(config), codex, stop_timeout)
    if not unit.installed:
        yield Check("service", True, f"not installed (optional: `codexd service install`, {unit.manager})")
        return
    if unit.current:
        yield Check("service", True, f"{unit.file} is installed and up to date")
    else:
        fix = "run `codexd service install` again"
        yield Check("service", True, f"{unit.file} differs from what this codexd would write: {fix}", True)
    search = service.path_of(unit) or ""
    for program in (codex, "node"):
        if shutil.which(program, path=search) is None:
            fix = "run `codexd service install` from a shell where it is found"
            yield Check("service PATH", False, f"{program} is not on the service's PATH ({search}): {fix}")


def run(config: str | None) -> Iterator[Check]:
    from codexd.codex import containment
    from codexd.config import settings

    try:
        loaded, path = settings.load(config)
    except ConfigError as exc:
        for problem in exc.problems:
            yield Check("settings", False, problem)
        return
    yield Check("settings", True, f"valid ({path}{'' if path.exists() else ', not present: defaults'})")
    yield from check_settings_file(path, bool(loaded.notify.urls))
    codex = check_codex(loaded.codex.command)
    yield codex
    if codex.ok:
        yield check_codex_args(loaded.codex.command, loaded.codex.args, loaded.codex.login_shell)
    yield check_tasks_dir(loaded.tasks_dir)
    yield check_spool(loaded.spool_dir, loaded.tasks_dir)
    yield check_daemon(loaded.tasks_dir)
    yield Check("process trees", *containment.doctor_line(loaded.process_trees))
    yield from check_service(config, loaded.codex.command[0], loaded.daemon.stop_timeout)
    if shutil.which(loaded.codex.command[0]):
        yield check_login(loaded.codex.command)
    yield from check_notify([u.get_secret_value() for u in loaded.notify.urls])
    yield from check_agent_env(loaded.codex.env)
    if os.environ.get("CODEXD_TASK_ID"):
        yield Check("environment", True, f"running inside task {os.environ['CODEXD_TASK_ID']}")
