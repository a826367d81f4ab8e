"""JSON the daemon writes or prints shows no control a terminal would obey, and reads back the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codexd.present.shown import json_safe
from codexd.tasks import files

pytestmark = pytest.mark.timeout(30)
HOSTILE = "safe\u202etxt.exe \x9b31m red \x7f \u2028 next \x1b]52;c;aGk=\x07 done"


def test_written_json_escapes_c1_bidi_and_separators_and_reads_back_the_same(tmp_path: Path) -> None:
    raw = files.dump_json({"title": HOSTILE, "é": "ünïcode stays"})
    text = raw.decode("utf-8")
    for char in ("\u202e", "\x9b", "\x7f", "\u2028", "\x1b", "\x07"):
        assert char not in text
    assert "\\u202e" in text and "\\u009b" in text and "ünïcode stays" in text
    assert json.loads(raw) == {"title": HOSTILE, "é": "ünïcode stays"}


def test_json_safe_leaves_json_valid_for_any_string() -> None:
    every = "".join(chr(c) for c in range(0x2100) if not 0xD800 <= c < 0xE000)
    assert json.loads(json_safe(json.dumps([every], ensure_ascii=False))) == [every]
