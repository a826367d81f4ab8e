"""A stand-in for `codex exec --json` that writes every hostile line it knows: events of
any shape on stdout, reports of any shape in reports.jsonl, and the final message the
instructions name (`MESSAGE: n`) in last-message.txt. Then it finishes its turn."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

EVENTS: list[bytes] = [
    b'{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}',
    b'{"type":"turn.started"}',
    b'{"type":"turn.failed","error":"quota exceeded"}',
    b'{"type":"turn.failed","error":5}',
    b'{"type":"turn.failed","error":{"message":{"nested":[1]}}}',
    b"[" * 100_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b'{"type":"item.completed","item":{"type":"agent_message","text":1e999}}',
    b'{"type":"item.completed","item":{"type":"agent_message","text":NaN}}',
    b'{"type":"item.completed","item":{"type":"agent_message","text":"\\ud800 lone"}}',
    b'{"type":"item.completed","item":{"type":"agent_message","text":"\xed\xa0\x80 raw"}}',
    b'{"type":"item.completed","item":["a","list"]}',
    b'{"type":"item.completed","item":{"type":"file_change","changes":"src/a.py"}}',
    b'{"type":"item.completed","item":{"type":"file_change","changes":[1,null,{"path":5,"kind":[]}]}}',
    b'{"type":"item.updated","item":{"type":"todo_list","items":[1,"x",{"text":{"a":1},"completed":"yes"}]}}',
    b'{"type":"item.updated","item":{"type":"todo_list","items":{"text":"x"}}}',
    b'{"type":"item.started","item":{"type":"command_execution","command":["ls"]}}',
    b'{"type":"item.completed","item":{"type":"command_execution","command":5,"exit_code":1e400}}',
    b'{"type":"item.completed","item":{"type":"command_execution","command":"ls","exit_code":"0"}}',
    b'{"type":"item.completed","item":{"type":"mcp_tool_call","server":{},"tool":[],"status":null}}',
    b'{"type":"item.completed","item":{"type":"web_search","query":12345678901234567890123}}',
    b'{"type":"item.completed","item":{"type":"error","message":{"x":1}}}',
    b'{"type":"thread.started","thread_id":{"id":1}}',
    b'{"type":"thread.started","thread_id":"--dangerously-bypass-approvals-and-sandbox"}',
    b'{"type":"error","message":null}',
    b'{"type":"item.started","item":{"type":"collab_tool_call","receiver_thread_ids":5,"tool":[]}}',
    b'{"type":"item.completed","item":{"type":"collab_tool_call","agents_states":{"a":[1],"b":{"message":5}}}}',
    b'{"type":"item.completed","item":{"type":"plan","text":{"steps":[1]}}}',
    b'{"type":"request_user_input","questions":[{"question":{"q":1}},5,null]}',
    b'{"type":"item.completed","item":{"type":{"nested":"type"},"text":"?"}}',
    b'{"type":["item.completed"]}',
    b'{"type":"future.event","payload":{"anything":[1,2,3]}}',
    b'{"type":"item.completed","item":{"type":"future_item","text":"?"}}',
    b"\xff\xfe\x00garbage",
    b"",
    b"   ",
    b"null",
    b"[]",
    b'"text"',
    b"5",
    b"Infinity",
    b"9" * 5000,
    b'{"type":"turn.started"}',  # the last turn decides: this one completes
    b'{"type":"item.completed","item":{"type":"agent_message","text":"done"}}',
    b'{"type":"turn.completed","usage":{"input_tokens":"many"}}',
]
REPORTS: list[bytes] = [
    b'{"total":"abc"}',
    b'{"total":1e999}',
    b'{"total":-5}',
    b'{"total":NaN}',
    b'{"total":' + b"9" * 400 + b"}",
    b'{"total":[3]}',
    b'{"current":{"a":1}}',
    b'{"current":"\\ud800"}',
    b'{"done":["x"]}',
    b'{"done":"first","outcome":5}',
    b'{"done":"second","outcome":"approved"}',
    b"[" * 100_000,
    b"not json at all",
    b"\xff\xfe",
    b"[1,2]",
    b'{"total":"3"}',
]
MESSAGES: list[bytes] = [
    b'{"prs":[{"number":602,"title":"toml","verdict":"approved"}]}',
    b"[1, 2]",
    b'{"prs":[1,null,["x"],{"number":[1],"title":{"a":1},"verdict":5}]}',
    b'{"prs":[{"number":1e999,"title":"x","verdict":["approved"]}],"summary":NaN}',
    b"[" * 100_000,
    b'{"a":' * 500 + b"1" + b"}" * 500,
    b'{"summary":"\\ud800"}',
    b"\xff\xfe not text",
    b"",
]


def main() -> None:
    task_dir = Path(os.environ["CODEXD_TASK_DIR"])
    asked = re.search(rb"MESSAGE: (\d+)", sys.stdin.buffer.read())
    with (task_dir / "reports.jsonl").open("ab") as reports:
        reports.write(b"".join(line + b"\n" for line in REPORTS))
    for line in EVENTS:
        sys.stdout.buffer.write(line + b"\n")
    sys.stdout.flush()
    message = MESSAGES[int(asked.group(1))] if asked else MESSAGES[0]
    (task_dir / "last-message.txt").write_bytes(message)


if __name__ == "__main__":
    main()
