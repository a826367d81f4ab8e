"""The baseline for intake latency: the least a spool watcher can do.

Watches a folder with watchfiles and, for each new file, starts the same stand-in Codex
in a new session, with nothing else: no parsing, no task folder, no status file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from watchfiles import Change, watch


def main(spool: Path, out: Path, codex: str) -> None:
    print("ready", flush=True)
    for changes in watch(spool, debounce=0, step=1, rust_timeout=0):
        for change, name in changes:
            path = Path(name)
            if change == Change.deleted or path.name.startswith(".") or not path.exists():
                continue
            task = out / path.stem
            task.mkdir(exist_ok=True)
            env = {**os.environ, "CODEXD_TASK_DIR": str(task)}
            with path.open("rb") as stdin:
                subprocess.Popen(
                    [codex], stdin=stdin, stdout=subprocess.DEVNULL, env=env, start_new_session=True
                )
            path.unlink()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
