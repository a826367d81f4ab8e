"""`codex.args`: which extra `codex exec` arguments can go with the ones codexd passes.

codexd runs `codex exec --json --skip-git-repo-check -C CWD -o FILE ... -` and resumes with
`... resume THREAD PROMPT`. Codex refuses a flag given twice, so a flag codexd passes
anyway is dropped from `codex.args` (merged); one that would change what codexd relies on
(where Codex works, where the answer goes, a prompt, a resumable session) is refused.
The option table is Codex 0.169's and 0.171's (`codex exec --help`); an option not in it is passed on
as it is, for `codexd doctor` to let the installed Codex judge.
"""

from __future__ import annotations

from dataclasses import dataclass

LOGIN_SHELL_KEY = "allow_login_shell"
# Options of `codex exec` that take a value; `-i/--image` takes one or more.
TAKES_VALUE = frozenset(
    {
        "-c", "--config", "--enable", "--disable", "-i", "--image", "-m", "--model", "--local-provider",
        "-p", "--profile", "-s", "--sandbox", "-C", "--cd", "--add-dir", "--thread-source",
        "--cyber-access-program", "--output-schema", "--color", "-o", "--output-last-message",
        "--remote", "--remote-auth-token-env",  # 0.171
    }
)  # fmt: skip
MANY_VALUES = frozenset({"-i", "--image"})
MERGED = frozenset({"--json", "--skip-git-repo-check"})  # codexd passes these itself
REFUSED = {
    "-C": "codexd sets the working folder per task: use the task's cwd (--cwd or front matter cwd)",
    "--cd": "codexd sets the working folder per task: use the task's cwd (--cwd or front matter cwd)",
    "-o": "codexd reads the final message from the task's own folder: remove it",
    "--output-last-message": "codexd reads the final message from the task's own folder: remove it",
    "--output-schema": 'give the task type a schema instead: [types.NAME] output_schema = "FILE"',
    "--ephemeral": "codexd resumes a stalled task's session, which --ephemeral does not keep: remove it",
    "-h": "Codex would print its help instead of working: remove it",
    "--help": "Codex would print its help instead of working: remove it",
    "-V": "Codex would print its version instead of working: remove it",
    "--version": "Codex would print its version instead of working: remove it",
    "--": "the arguments after it would become Codex's prompt: remove it",
    "--worktree": (
        "Codex's own worktree is detached and lost on resume: use codexd's (`codexd start --worktree`, "
        "front matter worktree = true, or the worktree setting)"
    ),
}
KNOWN_FLAGS = frozenset(
    {
        "--strict-config", "--oss", "--approve-for-me", "--dangerously-bypass-approvals-and-sandbox",
        "--dangerously-bypass-hook-trust", "--worktree", "--trust", "--ignore-user-config",
        "--ignore-rules", "--ephemeral", "-h", "--help", "-V", "--version",
    }
)  # fmt: skip
SUBCOMMANDS = frozenset({"resume", "fork", "review", "help"})


@dataclass(frozen=True)
class Arg:
    """One option of `codex.args` with its value(s), or a bare word (`name` None)."""

    words: tuple[str, ...]
    name: str | None
    values: tuple[str, ...] = ()


def _name_and_inline(word: str) -> tuple[str, str | None]:
    """`--cd=DIR` -> ("--cd", "DIR"); `-Cdir` -> ("-C", "dir"); `--json` -> ("--json", None)."""
    if word.startswith("--"):
        name, eq, value = word.partition("=")
        return name, value if eq else None
    if len(word) > 2 and word[:2] in TAKES_VALUE:
        return word[:2], word[2:].removeprefix("=")
    return word, None


def split(args: list[str]) -> list[Arg]:
    """`codex.args` grouped into options with their values, as Codex's parser reads them."""
    found: list[Arg] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not word.startswith("-") or word == "-":
            found.append(Arg((word,), None))
            continue
        name, inline = _name_and_inline(word)
        if inline is not None or name not in TAKES_VALUE:
            found.append(Arg((word,), name, () if inline is None else (inline,)))
            continue
        takes_next = i < len(args) and (args[i] == "-" or not args[i].startswith("-"))  # as Codex's parser
        values = args[i : i + 1] if takes_next else []
        while (
            name in MANY_VALUES and i + len(values) < len(args) and not args[i + len(values)].startswith("-")
        ):
            values.append(args[i + len(values)])
        i += len(values)
        found.append(Arg((word, *values), name, tuple(values)))
    return found


def _login_shell_override(arg: Arg) -> str | None:
    """The value of `-c allow_login_shell=VALUE`, or None for any other argument."""
    if arg.name not in ("-c", "--config") or not arg.values:
        return None
    key, eq, value = arg.values[0].partition("=")
    return value.strip() if eq and key.strip() == LOGIN_SHELL_KEY else None


def _problem(arg: Arg, after_unknown: bool, login_shell: bool) -> str | None:
    shown = " ".join(arg.words)
    if arg.name is None:
        if after_unknown and arg.words[0] not in SUBCOMMANDS and arg.words[0] != "-":
            return None  # most likely the value of an option this table does not know
        return (
            f"codex.args: {shown!r} would be taken as Codex's prompt or subcommand; codexd gives the "
            "instructions itself: remove it (or write it in the instructions)"
        )
    if arg.name in REFUSED:
        return f"codex.args: {arg.words[0]} cannot be used with codexd: {REFUSED[arg.name]}"
    if arg.name in TAKES_VALUE and not arg.values:
        return f"codex.args: {arg.name} needs a value: add it after {arg.name} or remove {arg.name}"
    override = _login_shell_override(arg)
    if override is not None and override != ("true" if login_shell else "false"):
        wanted = override if override in ("true", "false") else "true or false"
        return (
            f"codex.args: {shown} conflicts with codex.login_shell: remove it and set "
            f"codex.login_shell = {wanted} instead"
        )
    return None


def _may_take_value(arg: Arg) -> bool:
    """An option unknown to this table, without an inline value: the next word may be its value."""
    known = arg.name in TAKES_VALUE or arg.name in MERGED or arg.name in KNOWN_FLAGS or arg.name in REFUSED
    return arg.name is not None and not known and not arg.values


def problems(args: list[str], login_shell: bool) -> list[str]:
    """One line per argument that cannot work with the ones codexd passes (empty: all fine)."""
    found, after_unknown = [], False
    for arg in split(args):
        problem = _problem(arg, after_unknown, login_shell)
        if problem is not None:
            found.append(problem)
        after_unknown = _may_take_value(arg)
    return found


def merged(args: list[str], login_shell: bool) -> list[str]:
    """`codex.args` without what codexd passes itself (Codex refuses a flag given twice)."""
    kept: list[str] = []
    for arg in split(args):
        if arg.name in MERGED and not arg.values:
            continue
        if not login_shell and _login_shell_override(arg) == "false":
            continue
        kept += arg.words
    return kept
