"""Names for refused spool files: always short enough for their note, never two alike."""

from __future__ import annotations

import os

from codexd.tasks.spool import NAME_MAX, NAME_ROOM, rejected_name


def test_a_short_name_is_kept_and_a_newline_shown():
    assert rejected_name("notes.txt") == "notes.txt"
    assert rejected_name("new\nline.md") == "new?line.md"
    assert rejected_name(os.fsdecode(b"caf\xe9.txt")) == os.fsdecode(b"caf\xe9.txt")


def test_a_long_name_is_cut_at_a_character_boundary_with_a_hash():
    for char in ("x", "\u00e9", "\u20ac", "\U0001f600"):  # one to four bytes each
        for extra in range(4):
            name = char * (300 // len(char.encode())) + "y" * extra + ".md"
            cut = rejected_name(name)
            assert len(os.fsencode(cut)) <= NAME_MAX - NAME_ROOM
            cut.encode("utf-8")  # no half character: still valid UTF-8
            assert cut.startswith(char * 10)


def test_two_long_names_alike_but_for_their_end_stay_apart():
    first, second = "a" * 300 + "-one.md", "a" * 300 + "-two.md"
    assert rejected_name(first) != rejected_name(second)
    assert rejected_name(first) == rejected_name(first)
