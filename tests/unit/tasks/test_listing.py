"""The quick `list --json` reader: every task folder's status.json, with `os` alone."""

from __future__ import annotations

import pytest

from codexd.config.defaultdirs import is_task_id
from codexd.tasks import listing

pytestmark = pytest.mark.timeout(10)


def test_each_task_folder_gives_its_status_file_whole_however_long(tmp_path):
    big = b'{"text": "' + b"x" * 300_000 + b'"}\n'  # past the first read of 64 KiB
    for name, data in (("small", b"{}\n"), ("big", big), ("exact", b"y" * (1 << 16))):
        (tmp_path / name).mkdir(mode=0o700)
        (tmp_path / name / "status.json").write_bytes(data)
    (tmp_path / "no-status").mkdir(mode=0o700)
    (tmp_path / "not an id").mkdir(mode=0o700)
    found = dict(listing.named_status_files(str(tmp_path)))
    assert found == {"small": b"{}\n", "big": big, "exact": b"y" * (1 << 16)}


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("a", True),
        ("pr-19.review_2", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("-a", False),
        (".hidden", False),
        ("a b", False),
        ("a/b", False),
        ("é", False),
        ("ab$", False),
        ("a\n", False),
    ],
)
def test_a_task_id_is_what_spec_says(name, valid):
    assert is_task_id(name) is valid
