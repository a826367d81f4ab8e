"""The one family of errors the CLI turns into a single line and an exit code."""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124


class CodexdError(Exception):
    """A problem to tell the user in one line; `exit_code` follows SPEC.md."""

    exit_code = EXIT_FAILURE


class InvalidInput(CodexdError):
    """Bad usage or input: exit 2."""

    exit_code = EXIT_USAGE


class UnknownTask(InvalidInput, LookupError):
    def __init__(self, task_id: str, tasks_dir: object) -> None:
        super().__init__(
            f"no task {task_id!r} in {tasks_dir}; `codexd list` shows the tasks there "
            "(tasks_dir or CODEXD_TASKS_DIR names another folder)"
        )
        self.task_id = task_id


class BadTaskId(InvalidInput, LookupError):
    """An id outside SPEC's pattern: invalid input, and (for lookups) no task either."""


class ConfigError(InvalidInput):
    """The settings cannot be used; `problems` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class WaitTimeout(CodexdError, TimeoutError):
    exit_code = EXIT_TIMEOUT


class StorageError(CodexdError):
    """A task file could not be written (disk full, permissions)."""


class BrokenRecord(InvalidInput):
    """A task file that cannot be read as what it should be (edited by hand, or not ours)."""

    def __init__(self, path: object, why: str) -> None:
        super().__init__(f"{path} is not a valid task record ({why}): fix or remove it")
        self.path = path
