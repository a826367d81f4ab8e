"""A stand-in for `codex exec --json` whose agent writes terminal escape sequences and markup
everywhere it can: an agent message, a command, a file change, an error, reports in
reports.jsonl and the final message. Then it finishes its turn."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# OSC 52 (clipboard), OSC 0 (title), CSI, a C1 CSI, a bidi override, other C0, Rich markup,
# Markdown and HTML: none of it may reach a terminal or a document alive.
PAYLOAD = (
    "\x1b]52;c;cHduZWQ=\x07 \x1b]0;pwned\x07 \x1b[2J\x1b[31mred \x9b31m \u202egnp.exe \r\x08\x7f\x00 "
    "[link=https://evil.example]click[/link] [/] [b]bold <img src=x onerror=alert(1)> "
    "[md](https://evil.example) ![i](https://evil.example/i.png)"
)
SUMMARY = f"# Injected heading\n<script>alert(1)</script>\n{PAYLOAD}\n```\nfence"


def _item(item: dict[str, object]) -> dict[str, object]:
    return {"type": "item.completed", "item": item}


EVENTS = [
    {"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
    {"type": "turn.started"},
    _item({"type": "agent_message", "text": PAYLOAD}),
    {"type": "item.started", "item": {"type": "command_execution", "command": f"echo '{PAYLOAD}'"}},
    _item({"type": "command_execution", "command": f"echo '{PAYLOAD}'", "exit_code": 0}),
    _item({"type": "file_change", "changes": [{"kind": "add", "path": PAYLOAD}]}),
    {"type": "error", "message": PAYLOAD},
    {"type": "turn.completed", "usage": {}},
]
REPORTS = [{"total": 2}, {"done": PAYLOAD, "outcome": PAYLOAD}, {"current": PAYLOAD}]


def main() -> None:
    task_dir = Path(os.environ["CODEXD_TASK_DIR"])
    sys.stdin.buffer.read()
    with (task_dir / "reports.jsonl").open("a") as reports:
        reports.write("".join(json.dumps(r) + "\n" for r in REPORTS))
    for event in EVENTS:
        # C1 and bidi controls are legal raw in JSON text: events.jsonl holds them as they came.
        sys.stdout.buffer.write(json.dumps(event, ensure_ascii=False).encode() + b"\n")
    sys.stdout.flush()
    (task_dir / "last-message.txt").write_text(SUMMARY)


if __name__ == "__main__":
    main()
