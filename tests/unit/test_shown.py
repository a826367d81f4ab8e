"""shown(): what the agent wrote is shown, never obeyed by a terminal."""

from __future__ import annotations

import subprocess
import sys

from codexd.progress import one_line
from codexd.shown import shown

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
    code = "import sys; import codexd.shown; print(sorted({'re', 'typing'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
