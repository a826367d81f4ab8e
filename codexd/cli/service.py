"""`codexd service install|uninstall|status`: a systemd user unit or a launchd agent.

The templates live in the top-level `systemd/` and `launchd/` folders (and in the wheel);
this module fills in absolute paths (the installed `codexd`, the config file, a PATH that
finds `codex` and `node`), writes the file where the manager looks, and runs the manager.
Where the manager cannot be reached (no user systemd, not macOS), it writes the file and
says exactly which commands to run.
"""

from __future__ import annotations

import getpass
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from codexd.errors import CodexdError, InvalidInput
from codexd.tasks import store

UNIT = "codexd.service"
LABEL = "io.codexd.daemon"
MANAGERS = ("systemd", "launchd")
UNREACHABLE = {"systemd": "no user systemd instance answers here", "launchd": "launchd runs only on macOS"}
Run = Callable[[list[str]], subprocess.CompletedProcess[str]]


def run_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


def default_manager() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def _template(folder: str, name: str) -> bytes:
    packaged = resources.files("codexd") / "templates" / name
    if packaged.is_file():
        return packaged.read_bytes()
    return (Path(__file__).resolve().parents[2] / folder / name).read_bytes()  # a source checkout


def program(config: Path | None) -> list[str]:
    """The command the manager runs: the installed `codexd` beside this interpreter."""
    script = Path(sys.executable).with_name("codexd")
    argv = [str(script)] if os.access(script, os.X_OK) else [sys.executable, "-m", "codexd"]
    return [*argv, *(["--config", str(config)] if config else []), "daemon"]


def search_path(codex: str) -> str:
    """A PATH for the service: where codex and node are, codexd's own folder, then this shell's."""
    first = [shutil.which(codex), shutil.which("node")]
    dirs = [str(Path(found).parent) for found in first if found]
    dirs.append(str(Path(sys.executable).parent))  # `codexd progress` from inside tasks
    dirs += os.environ.get("PATH", "").split(os.pathsep)
    dirs += ["/opt/homebrew/bin", "/usr/local/bin"] if sys.platform == "darwin" else ["/usr/local/bin"]
    dirs += ["/usr/bin", "/bin"]
    # A manager expands neither `~` nor `$VAR`: only absolute, literal folders.
    usable = [d for d in dirs if d.startswith("/") and "$" not in d and "~" not in d and ":" not in d]
    return ":".join(dict.fromkeys(usable))


@dataclass(frozen=True)
class Service:
    manager: str
    file: Path
    content: bytes
    argv: list[str] = field(default_factory=list)
    path: str = ""

    @property
    def installed(self) -> bool:
        return self.file.is_file()

    @property
    def current(self) -> bool:
        try:
            return self.file.read_bytes() == self.content
        except OSError:
            return False


def _home() -> Path:
    return Path.home()


INSTALLED_HEADER = (
    "# Written by `codexd service install`. Run it again after changing codexd's settings\n"
    "# or upgrading codexd, rather than editing this file.\n"
)


def systemd_unit(argv: list[str], path: str, stop_timeout: float) -> bytes:
    template = _template("systemd", UNIT).decode()
    text = INSTALLED_HEADER + template[template.index("[Unit]") :]  # the template's own header goes
    fills = {
        "@EXEC_START@": " ".join(_systemd_quote(a) for a in argv),
        "@PATH@": path.replace("%", "%%"),
        "@TIMEOUT_STOP@": str(int(stop_timeout) + 30),
    }
    for key, value in fills.items():
        text = text.replace(key, value)
    return text.encode()


def _systemd_quote(arg: str) -> str:
    arg = arg.replace("%", "%%").replace("$", "$$")
    return f'"{arg}"' if any(c in arg for c in " \t\"'\\") else arg


def launchd_plist(argv: list[str], path: str, stop_timeout: float, logs: Path) -> bytes:
    plist: dict[str, Any] = plistlib.loads(_template("launchd", f"{LABEL}.plist"))
    plist["ProgramArguments"] = argv
    plist["EnvironmentVariables"]["PATH"] = path
    plist["ExitTimeOut"] = int(stop_timeout) + 30
    plist["StandardOutPath"] = plist["StandardErrorPath"] = str(logs / "codexd.log")
    return plistlib.dumps(plist)


def plan(manager: str, config: Path | None, codex: str, stop_timeout: float) -> Service:
    """The service file this machine should have, and where it goes."""
    if manager not in MANAGERS:
        raise InvalidInput(f"unknown service manager {manager!r}: use --systemd or --launchd")
    argv, path = program(config), search_path(codex)
    if manager == "systemd":
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config")
        file = config_home / "systemd" / "user" / UNIT
        return Service(manager, file, systemd_unit(argv, path, stop_timeout), argv, path)
    file = _home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    logs = logs_dir()
    return Service(manager, file, launchd_plist(argv, path, stop_timeout, logs), argv, path)


def logs_dir() -> Path:
    return _home() / "Library" / "Logs" / "codexd"


# -- talking to the manager --------------------------------------------------------------


def _gui() -> str:
    return f"gui/{os.getuid()}"


def start_commands(service: Service, restart: bool = False) -> list[list[str]]:
    if service.manager == "systemd":
        # try-restart: a daemon running the old unit restarts (its tasks go on); else nothing.
        again = [["systemctl", "--user", "try-restart", UNIT]] if restart else []
        return [
            ["systemctl", "--user", "daemon-reload"],
            *again,
            ["systemctl", "--user", "enable", "--now", UNIT],
        ]
    return [
        ["launchctl", "bootout", f"{_gui()}/{LABEL}"],
        ["launchctl", "bootstrap", _gui(), str(service.file)],
    ]


def stop_commands(service: Service) -> list[list[str]]:
    if service.manager == "systemd":
        return [["systemctl", "--user", "disable", "--now", UNIT]]
    return [["launchctl", "bootout", f"{_gui()}/{LABEL}"]]


def reachable(manager: str, run: Run = run_command) -> bool:
    """Can we talk to the manager here (a user systemd instance; launchd on macOS)?"""
    if manager == "launchd":
        return sys.platform == "darwin" and shutil.which("launchctl") is not None
    if shutil.which("systemctl") is None:
        return False
    return run(["systemctl", "--user", "show-environment"]).returncode == 0


def shown(commands: list[list[str]]) -> str:
    return " && ".join(shlex.join(c) for c in commands)


def install(service: Service, start: bool, run: Run = run_command) -> list[str]:
    """Write the file; start it unless told not to. Returns what to tell the user."""
    service.file.parent.mkdir(parents=True, exist_ok=True)
    if service.manager == "launchd":
        logs_dir().mkdir(parents=True, exist_ok=True)
    again = service.installed and not service.current  # a changed file: a running daemon restarts
    store.write_atomic(service.file, service.content)
    said = [f"wrote {service.file}"]
    commands = start_commands(service, again)
    if not start:
        return [*said, f"start it with: {shown(commands)}"]
    if not reachable(service.manager, run):
        return [*said, f"{UNREACHABLE[service.manager]}; to start it, run: {shown(commands)}"]
    _run_all(commands, run, tolerate_first=service.manager == "launchd")
    return [*said, f"started: {shown(commands)}"]


def _run_all(commands: list[list[str]], run: Run, tolerate_first: bool = False) -> None:
    for n, argv in enumerate(commands):
        done = run(argv)
        if done.returncode != 0 and not (tolerate_first and n == 0):
            why = (done.stderr or done.stdout).strip().splitlines()
            raise CodexdError(f"`{shlex.join(argv)}` failed: {why[-1] if why else f'exit {done.returncode}'}")


def linger_hint(run: Run = run_command) -> str | None:
    """Without lingering, a user's services stop when they log out."""
    user = getpass.getuser()
    if sys.platform == "darwin" or not user or shutil.which("loginctl") is None:
        return None
    done = run(["loginctl", "show-user", user, "--property=Linger"])
    if done.returncode == 0 and done.stdout.strip() == "Linger=yes":
        return None
    return f"to keep codexd running after you log out: loginctl enable-linger {user}"


def uninstall(service: Service, run: Run = run_command) -> list[str]:
    if not service.installed:
        return [f"not installed: {service.file} does not exist"]
    said = []
    if reachable(service.manager, run):
        stop = stop_commands(service)
        _run_all(stop, run, tolerate_first=service.manager == "launchd")
        said.append(f"stopped: {shown(stop)}")
    service.file.unlink()
    said.append(f"removed {service.file}")
    if service.manager == "systemd" and reachable("systemd", run):
        run(["systemctl", "--user", "daemon-reload"])
    return said


def manager_state(service: Service, run: Run = run_command) -> dict[str, Any]:
    """Whether the manager has it enabled and running; None where it cannot be asked."""
    if not reachable(service.manager, run):
        return {"enabled": None, "running": None}
    if service.manager == "systemd":
        enabled = run(["systemctl", "--user", "is-enabled", UNIT]).stdout.strip() == "enabled"
        running = run(["systemctl", "--user", "is-active", UNIT]).stdout.strip() == "active"
        return {"enabled": enabled, "running": running}
    loaded = run(["launchctl", "print", f"{_gui()}/{LABEL}"])
    return {"enabled": loaded.returncode == 0, "running": "state = running" in loaded.stdout}


def path_of(service: Service) -> str | None:
    """The PATH the installed file gives the daemon."""
    try:
        raw = service.file.read_bytes()
    except OSError:
        return None
    if service.manager == "launchd":
        try:
            return str(plistlib.loads(raw)["EnvironmentVariables"]["PATH"])
        except (ValueError, KeyError, TypeError):
            return None
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("Environment=PATH="):
            return line.removeprefix("Environment=PATH=").replace("%%", "%")
    return None
