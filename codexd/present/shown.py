"""What the agent wrote, made safe to show: control characters become visible escapes.

Agent and Codex text reaches terminals and documents (progress.log, `logs`, `status`, the
dashboard, reports, notices). A terminal obeys escape sequences: OSC 52 sets the clipboard,
OSC 0 the window title, CSI moves the cursor; bidi overrides reorder what is read. So every
C0 control but tab and newline, DEL, every C1 control, the bidi controls and the bytes that
were not UTF-8 (surrogate-escaped, where a raw 0x9b is a C1 CSI) are written as text:
ESC as `\\x1b`, U+202E as `\\u202e`. A leaf module: `logs -n` is a quick command.
"""

from __future__ import annotations

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_KEPT = (0x09, 0x0A)  # tab and newline move the cursor only where text is expected to


def _escaped(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TABLE = {c: _escaped(c) for c in (*range(0x20), *range(0x7F, 0xA0), *_BIDI) if c not in _KEPT}
# Bytes that were not UTF-8, decoded with surrogateescape: shown as the bytes they were.
_TABLE.update({0xDC80 + b: f"\\x{0x80 + b:02x}" for b in range(0x80)})


def shown(text: str) -> str:
    """`text` with every control character a terminal or a reader would obey made visible."""
    return text.translate(_TABLE)


# JSON text keeps its C0 escapes (JSON requires them); these are valid JSON escapes that read back the same.
_JSON_TABLE = {c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0), *_BIDI, 0x2028, 0x2029)}


def json_safe(text: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) with DEL, the C1 and bidi controls
    and the line separators written as `\\uXXXX` escapes: a terminal that shows it obeys none,
    and it reads back the same. (They can only occur inside JSON strings, so this is safe.)"""
    return text if text.isascii() else text.translate(_JSON_TABLE)  # isascii: one flag, no scan


def shown_line(text: str) -> str:
    """shown(), on one line: a newline in agent text cannot forge another line."""
    return " ".join(shown(text).split())


# Characters that start Markdown or HTML inline: links, images, emphasis, code, tags, entities,
# table cells. Headings, lists and quotes start a line, and md_text() never starts one.
_MD_SPECIAL = {ord(c): "\\" + c for c in "\\`*_[]<>|~&!"}


def md_text(text: str) -> str:
    """Agent text as inline Markdown that shows what it says: one line, controls made visible,
    every character that would start a link, an image, a tag or emphasis escaped."""
    return shown_line(text).translate(_MD_SPECIAL)
