"""Links planted in a task's folder (by an agent that can write there) are never followed:
the daemon does not write through them, truncate their targets, or read them as its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from codexd.tasks import store
from tests.conftest import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.timeout(60)]

PLANTER = """#!/bin/bash
cat > /dev/null
printf '{{"type":"thread.started","thread_id":"links-1"}}\\n'
ln -sf {target} "$CODEXD_TASK_DIR/progress.log"
ln -sf {secret} "$CODEXD_TASK_DIR/last-message.txt"
sleep 0.5
printf '{{"type":"item.completed","item":{{"id":"i0","type":"agent_message","text":"planted line"}}}}\\n'
printf '{{"type":"turn.completed","usage":{{}}}}\\n'
"""


def test_a_link_planted_as_progress_log_is_never_written_through(env, daemon):
    target, secret = env.root / "bashrc", env.root / "id_rsa"
    target.write_text("precious\n")
    secret.write_text("TOPSECRET\n")
    codex = env.root / "planter"
    codex.write_text(PLANTER.format(target=target, secret=secret))
    codex.chmod(0o755)
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(codex)]))
    daemon()
    (env.spool / "linked.md").write_text("Do it.\n")
    status = env.tasks / "linked" / store.STATUS
    ended = lambda: status.exists() and json.loads(status.read_text())["status"] == "completed"  # noqa: E731
    wait_for(ended, 20, "the task's end")
    assert target.read_text() == "precious\n"  # nothing appended through the link
    log = env.tasks / "linked" / store.PROGRESS
    assert not log.is_symlink() and "planted line" in log.read_text()
    assert "TOPSECRET" not in (env.tasks / "linked" / store.RESULTS).read_text()


def test_the_store_never_writes_truncates_or_reads_through_a_link(tmp_path: Path):
    target = tmp_path / "bashrc"
    target.write_text("precious\n" * 10)
    link = tmp_path / "progress.log"
    os.symlink(target, link)
    assert store.size_of(link) < target.stat().st_size  # the link's own size, not its target's
    assert store.read_from(link, 0) == b"" and store.read_text(link) is None
    assert list(store.complete_lines(link, 0)) == []
    assert store.truncate_to(link, 3) is False  # the link is replaced by an empty file of ours
    assert target.read_text() == "precious\n" * 10 and not link.is_symlink()
    link.unlink()
    os.symlink(target, link)
    store.append_line(link, "agent text")
    assert target.read_text() == "precious\n" * 10
    assert not link.is_symlink() and link.read_text() == "agent text\n"
    link.unlink()
    os.symlink(target, link)
    with store.open_append(link) as out:
        out.write(b"codex output\n")
    assert target.read_text() == "precious\n" * 10 and link.read_text() == "codex output\n"


GATED = """#!/bin/bash
cat > /dev/null
while [ ! -e {gate} ]; do sleep 0.05; done
printf '{{"type":"turn.completed","usage":{{}}}}\\n'
"""


@pytest.mark.parametrize("planted", ["/dev/zero", "secret"])
def test_instructions_replaced_by_a_link_while_queued_are_refused_not_read(env, daemon, planted):
    """Codex's stdin is the task's instructions.md: a link planted there (to /dev/zero, which
    would hang the daemon, or to a secret) fails that task with its reason, read never."""
    secret = env.root / "secret"
    secret.write_text("TOPSECRET\n")
    gate, codex = env.root / "gate", env.root / "gated"
    codex.write_text(GATED.format(gate=gate))
    codex.chmod(0o755)
    env.set(CODEXD_CODEX__COMMAND=json.dumps([str(codex)]), CODEXD_MAX_PARALLEL="1")
    daemon()
    (env.spool / "first.md").write_text("Wait.\n")
    wait_for((env.tasks / "first" / store.STATUS).exists, 20, "the first task")
    (env.spool / "second.md").write_text("Do it.\n")
    second = env.tasks / "second"
    wait_for((second / store.STATUS).exists, 20, "the second task queued")
    (second / store.INSTRUCTIONS).unlink()
    os.symlink(planted if planted.startswith("/") else secret, second / store.INSTRUCTIONS)
    gate.touch()
    ended = lambda: json.loads((second / store.STATUS).read_text())["status"] == "failed"  # noqa: E731
    wait_for(ended, 20, "the second task refused")
    error = json.loads((second / store.STATUS).read_text())["error"]
    assert "symbolic link" in error or "not a regular file" in error, error
    assert not (second / store.EVENTS).exists() or "TOPSECRET" not in (second / store.EVENTS).read_text()
