"""The API refuses an id that is not SPEC's before it builds a path from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexd import api
from codexd.errors import InvalidInput


@pytest.mark.parametrize("bad", ["../x", "a\x00b", "a/b", "..", "", "x" * 129])
def test_the_api_refuses_a_bad_id_before_building_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    (tmp_path / "config.toml").write_text("")
    monkeypatch.setenv("CODEXD_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("CODEXD_SPOOL_DIR", str(tmp_path / "spool"))
    tasks = api.Tasks(tmp_path / "tasks")
    (tmp_path / "x.md").write_text("Do it.\n")  # what `<spool>/../x.md` would find
    for call in (tasks.status_dict, tasks.request_stop, tasks.request_restart, tasks.report):
        with pytest.raises(InvalidInput, match="invalid task id"):
            call(bad)
    assert not (tmp_path / "tasks" / ".requests").exists()
