"""The agent's environment: an allowlist of what Codex needs, plus what `codex.env` names.

Everything else in the daemon's environment is withheld: a task can print its environment
into events.jsonl, and a prompt-injected agent can send it anywhere. codexd's own settings
(notification URLs among them) and the service manager's variables are withheld always.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

NEEDED = frozenset(
    {
        # the process and its user
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TERM", "TZ", "LANG", "LANGUAGE",
        # Codex's own folder and its provider keys
        "CODEX_HOME", "OPENAI_API_KEY", "CODEX_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY",
        # a corporate proxy and the CA bundles it needs
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
        "http_proxy", "https_proxy", "no_proxy", "all_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        # git over ssh, and the user's folders
        "SSH_AUTH_SOCK", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
    }
)  # fmt: skip
NEEDED_PREFIXES = ("LC_",)  # locale categories
# codexd's settings (CODEXD_NOTIFY__URLS...), apprise's URLs, and the service manager's sockets.
OWN_PREFIXES = ("CODEXD_", "APPRISE_", "WATCHDOG_")
OWN_NAMES = frozenset({"NOTIFY_SOCKET"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_own(name: str) -> bool:
    """codexd's own (or its service manager's): never passed, whatever asks for it."""
    return name in OWN_NAMES or name.upper().startswith(OWN_PREFIXES)


def name_problem(name: str) -> str | None:
    """Why `name` cannot be in codex.env, or None."""
    if not _NAME.fullmatch(name):
        return f"{name!r} is not a variable name: codex.env lists names only (set values in the environment)"
    if is_own(name):
        return f"{name} is codexd's own and never reaches the agent: remove it from codex.env"
    return None


def codex_home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("CODEX_HOME") or Path(environ.get("HOME") or Path.home()) / ".codex")


def provider_keys(environ: Mapping[str, str]) -> set[str]:
    """The `env_key` of every model provider in Codex's config.toml; none if it is missing or broken."""
    try:
        config = tomllib.loads((codex_home(environ) / "config.toml").read_text())
    except (OSError, ValueError):
        return set()
    providers = config.get("model_providers")
    if not isinstance(providers, dict):
        return set()
    keys = (table.get("env_key") for table in providers.values() if isinstance(table, dict))
    return {key for key in keys if isinstance(key, str)}


def passes(name: str, allowed: frozenset[str] | set[str]) -> bool:
    return not is_own(name) and (name in allowed or name.startswith(NEEDED_PREFIXES))


def split(environ: Mapping[str, str], extra: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """What passes to the agent, and the names withheld."""
    allowed = NEEDED | provider_keys(environ) | set(extra)
    passed = {name: value for name, value in environ.items() if passes(name, allowed)}
    return passed, sorted(name for name in environ if name not in passed)


def for_agent(environ: Mapping[str, str] | None, extra: Iterable[str]) -> dict[str, str]:
    return split(os.environ if environ is None else environ, extra)[0]
