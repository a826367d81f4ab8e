"""`codexd service` in a temporary HOME: generated units checked by systemd-analyze, plists
by plistlib, and install/status/uninstall round trips against a recording systemctl."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(60)]

# A systemctl that records its calls; `show-environment` fails when ./down exists.
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$2" in
  show-environment) [ -e "$FAKE_DIR/down" ] && exit 1; exit 0 ;;
  is-enabled) echo enabled ;;
  is-active) echo active ;;
esac
"""


@pytest.fixture
def home(env, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "systemctl").write_text(FAKE_SYSTEMCTL)
    (fake / "systemctl").chmod(0o755)
    (fake / "loginctl").write_text("#!/bin/sh\necho Linger=no\n")
    (fake / "loginctl").chmod(0o755)
    env.vars.pop("XDG_CONFIG_HOME", None)
    env.set(
        HOME=str(home),
        PATH=f"{fake}:{os.environ['PATH']}",
        FAKE_LOG=str(tmp_path / "systemctl.log"),
        FAKE_DIR=str(tmp_path),
    )
    return home


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "systemctl.log"
    return log.read_text().splitlines() if log.exists() else []


def unit_file(home: Path) -> Path:
    return home / ".config" / "systemd" / "user" / "codexd.service"


def test_the_generated_unit_passes_systemd_analyze_without_a_word(env, home, tmp_path):
    done = env.codexd("service", "install", "--systemd", "--no-start")
    assert done.returncode == 0, done.stderr
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    checked = subprocess.run(
        [
            shutil.which("systemd-analyze") or "systemd-analyze",
            "verify",
            "--user",
            "--man=no",
            str(unit_file(home)),
        ],
        env={**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")  # it exits 0 on unknown keys


def test_the_unit_has_absolute_paths_and_the_recovery_settings(env, home):
    env.codexd("service", "install", "--systemd", "--no-start")
    text = unit_file(home).read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith(("#", "["))]
    values = dict(line.split("=", 1) for line in lines if not line.startswith("Environment="))
    program = values["ExecStart"].split()
    assert Path(program[0]).is_absolute() and os.access(program[0], os.X_OK)
    assert program[1:] == ["--config", env.vars["CODEXD_CONFIG"], "daemon"]  # the config the user named
    assert (values["Type"], values["KillMode"], values["Restart"]) == ("notify", "process", "on-failure")
    assert (values["WatchdogSec"], values["TimeoutStopSec"], values["RestartSec"]) == ("60", "90", "5")
    assert values["StandardError"] == "journal" and values["WantedBy"] == "default.target"
    path = next(line for line in lines if line.startswith("Environment=PATH=")).split("=", 2)[2].split(":")
    assert path and all(p.startswith("/") for p in path) and str(Path(program[0]).parent) in path
    assert text.startswith("# Written by `codexd service install`.")
    assert not any("@" in line or "~" in line for line in lines)  # all filled in; nothing to expand


def test_install_status_and_uninstall_round_trip(env, home, tmp_path):
    done = env.codexd("service", "install")
    assert done.returncode == 0, done.stderr
    assert f"wrote {unit_file(home)}" in done.stdout
    assert (
        "started: systemctl --user daemon-reload && systemctl --user enable --now codexd.service"
        in done.stdout
    )
    assert "loginctl enable-linger" in done.stdout and "logs: journalctl --user -u codexd -f" in done.stdout
    assert calls(tmp_path)[-2:] == ["--user daemon-reload", "--user enable --now codexd.service"]

    status = env.codexd("service", "status")
    assert status.returncode == 1  # the fake manager says active, but no daemon answers here
    assert "installed: yes, up to date" in status.stdout and "enabled:   yes" in status.stdout
    assert "daemon:    not running" in status.stdout

    env.set(CODEXD_DAEMON__STOP_TIMEOUT="120")  # the unit's TimeoutStopSec changes with it
    stale = env.codexd("service", "status")
    assert "out of date: run `codexd service install` again" in stale.stdout
    again = env.codexd("service", "install")
    assert again.returncode == 0 and "--user try-restart codexd.service" in calls(tmp_path)
    assert "TimeoutStopSec=150" in unit_file(home).read_text()

    gone = env.codexd("service", "uninstall")
    assert gone.returncode == 0 and f"removed {unit_file(home)}" in gone.stdout
    assert "--user disable --now codexd.service" in calls(tmp_path) and not unit_file(home).exists()
    assert "installed: no" in env.codexd("service", "status").stdout
    assert "not installed" in env.codexd("service", "uninstall").stdout


def test_without_a_user_systemd_it_writes_the_unit_and_says_what_to_run(env, home, tmp_path):
    (tmp_path / "down").touch()
    done = env.codexd("service", "install")
    assert done.returncode == 0, done.stderr
    assert unit_file(home).is_file()
    assert (
        "no user systemd instance answers here; to start it, run: systemctl --user daemon-reload && "
        "systemctl --user enable --now codexd.service"
    ) in done.stdout
    status = env.codexd("service", "status")
    assert "enabled:   unknown (the service manager cannot be reached here)" in status.stdout


def test_the_launchd_agent_is_a_valid_plist_with_absolute_paths(env, home):
    done = env.codexd("service", "install", "--launchd")
    assert done.returncode == 0, done.stderr
    file = home / "Library" / "LaunchAgents" / "io.codexd.daemon.plist"
    assert "launchd runs only on macOS; to start it, run: launchctl bootout gui/" in done.stdout
    plist = plistlib.loads(file.read_bytes())
    assert plist["Label"] == "io.codexd.daemon"
    assert all(isinstance(a, str) and a for a in plist["ProgramArguments"])
    assert Path(plist["ProgramArguments"][0]).is_absolute() and plist["ProgramArguments"][-1] == "daemon"
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert isinstance(plist["ThrottleInterval"], int) and plist["ProcessType"] == "Background"
    assert isinstance(plist["ExitTimeOut"], int) and plist["ExitTimeOut"] == 90
    logs = home / "Library" / "Logs" / "codexd"
    assert (
        plist["StandardOutPath"] == plist["StandardErrorPath"] == str(logs / "codexd.log") and logs.is_dir()
    )
    path = plist["EnvironmentVariables"]["PATH"].split(":")
    assert all(p.startswith("/") for p in path) and "/usr/bin" in path
    strings = [plist["Label"], *plist["ProgramArguments"], plist["StandardOutPath"], *path]
    assert not any("~" in s or "$" in s for s in strings)


def test_both_managers_at_once_is_refused_in_one_line(env, home):
    both = env.codexd("service", "install", "--systemd", "--launchd")
    assert both.returncode == 2 and both.stderr == "codexd: choose one of --systemd and --launchd\n"
    assert not unit_file(home).exists()


def test_doctor_checks_the_installed_service(env, home, model_world):
    model_world({})
    codex_dir = str(Path(json.loads(env.vars["CODEXD_CODEX__COMMAND"])[0]).parent)
    env.set(PATH=f"{env.vars['PATH']}:{codex_dir}", CODEXD_CODEX__COMMAND='["codex"]')  # found on PATH
    env.codexd("service", "install", "--no-start")
    done = env.codexd("doctor")
    assert f"ok    service: {unit_file(home)} is installed and up to date" in done.stdout
    assert "service PATH" not in done.stdout  # codex and node are both on its PATH
    assert "warn  codex login: not logged in, but $MOCK_API_KEY is set here" in done.stdout
    assert done.returncode == 0, done.stdout
    unit_file(home).write_text(unit_file(home).read_text().replace(codex_dir, "/nowhere"))
    stale = env.codexd("doctor")
    assert f"warn  service: {unit_file(home)} differs from what this codexd would write" in stale.stdout
    assert "FAIL  service PATH: codex is not on the service's PATH" in stale.stdout
    assert stale.returncode == 1
