"""shown(): what the agent wrote is shown, never obeyed by a terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from codexd.codex.events import one_line
from codexd.present.shown import shown

HOSTILE = "\x1b]52;c;cHduZWQ=\x07\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eexe.txt\r\x08\x7f\x00\x1b\\"
OBEYED = ("\x1b", "\x07", "\x9b", "\u202e", "\r", "\x08", "\x7f", "\x00")


def test_controls_become_visible_escapes():
    assert shown("a\x1b]0;pwned\x07b") == "a\\x1b]0;pwned\\x07b"
    assert shown("\x9b2J") == "\\x9b2J"
    assert shown("abc\u202etxt.exe") == "abc\\u202etxt.exe"
    assert not any(c in shown(HOSTILE) for c in OBEYED)


def test_tab_newline_and_ordinary_text_are_kept():
    text = "line one\tcol\nline two: é ✔ 中文 [b]x[/b] <a>"
    assert shown(text) == text


def test_bytes_that_were_not_utf8_are_shown_as_bytes():
    raw = b"ok \x9b31m \xff".decode("utf-8", "surrogateescape")
    assert shown(raw) == "ok \\x9b31m \\xff"


def test_one_line_neutralises_at_the_source():
    line = one_line(HOSTILE + "\n  more")
    assert not any(c in line for c in OBEYED)
    assert line.endswith(" more")


def test_shown_is_a_leaf_that_imports_nothing_heavy():
    code = "import sys; import codexd.present.shown; print(sorted({'re', 'typing'} & set(sys.modules)))"
    root = Path(__file__).parents[3]
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"


MARKUP = "[link=https://evil.example]click[/link] [/] [@click=app.quit]x[/] [md](https://evil.example) <b>"


def hostile_task() -> dict[str, object]:
    said = HOSTILE + " " + MARKUP + "\nforged line"
    return {
        "task_id": "t1",
        "type": "generic",
        "status": "failed",
        "created_at": "2025-10-31T11:50:00Z",
        "started_at": "2025-10-31T11:50:01Z",
        "finished_at": "2025-10-31T11:51:00Z",
        "progress": {
            "total": 2,
            "completed": 1,
            "current": said,
            "items": [{"title": said, "outcome": said}],
        },
        "last_log": {"at": "2025-10-31T11:50:30Z", "text": said},
        "error": said,
        "log_file": "-",
    }


def test_status_shows_agent_text_on_its_own_lines():
    from codexd.present.views import task_details

    details = task_details(hostile_task())
    assert not any(c in details for c in OBEYED)
    assert "forged line" in details
    assert not any(line.startswith("forged") for line in details.splitlines())


def test_dashboard_text_is_never_markup():
    from datetime import UTC, datetime

    from rich.text import Text

    from codexd.cli.dashboard import task_lines

    running = hostile_task() | {"status": "in_progress"}  # an ended task shows no current item
    lines = task_lines(running, datetime(2025, 10, 31, 12, tzinfo=UTC))
    for name in ("current", "items", "last", "error"):
        assert isinstance(lines[name], Text) and lines[name].spans == [], name
        assert MARKUP in lines[name].plain, name
        assert not any(c in lines[name].plain for c in OBEYED), name


def test_notices_show_agent_text_escaped():
    from datetime import UTC, datetime

    from codexd.notify import notices
    from codexd.tasks.records import LastLog, Progress, TaskStatus
    from codexd.tasks.states import TaskState

    said = HOSTILE + " " + MARKUP + "\n# Heading"
    status = TaskStatus(
        task_id="t1",
        type="generic",
        status=TaskState.FAILED,
        created_at="2025-10-31T11:50:00Z",
        updated_at="2025-10-31T11:51:00Z",
        log_file="-",
        started_at="2025-10-31T11:50:01Z",
        finished_at="2025-10-31T11:51:00Z",
        progress=Progress(current=said),
        last_log=LastLog("2025-10-31T11:50:30Z", said),
        error=said,
    )
    notice = notices.render(status, "failed", datetime(2025, 10, 31, 12, tzinfo=UTC))
    from codexd.notify import plugins

    for body in (notice.title, notice.text, notice.markdown, *(f.value for f in notice.fields)):
        assert not any(c in body for c in OBEYED)
    assert "pwned" in notice.text and "[md](" not in notice.markdown and "\n# Heading" not in notice.markdown
    assert "\\[md\\](https://evil.example) \\<b\\>" in plugins.discord_fields(notice.fields)[0]["value"]


def test_markdown_and_html_reports_escape_agent_text():
    from codexd.present import reports

    assert reports.md_code("a`b") == "``a`b``"
    assert reports.md_block("```\nx") == "````text\n```\nx\n````"
    assert "<b>" not in reports._html(MARKUP) and "\\x1b" in reports._html(HOSTILE)
