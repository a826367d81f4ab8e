"""The records' fast copy: the same value dataclasses.replace makes, for a fifth of the cost."""

from __future__ import annotations

import dataclasses

import pytest

from codexd.tasks import frozen
from codexd.tasks.cursor import Cursor
from codexd.tasks.records import LastLog
from codexd.tasks.store import status_from

pytestmark = pytest.mark.timeout(10)
RECORD = (
    b'{"task_id": "t1", "type": "generic", "status": "in_progress", "created_at": "2026-11-26T00:00:00Z",'
    b' "updated_at": "2026-11-26T00:00:00Z", "log_file": "progress.log"}'
)


def test_a_copy_with_changes_equals_what_dataclasses_make():
    status = status_from(RECORD)
    changes = {"pid": 7, "last_log": LastLog("2026-11-26T00:00:01Z", "x"), "daemon": Cursor(events=10)}
    copy = frozen.replace(status, **changes)
    assert copy == dataclasses.replace(status, **changes)
    assert copy.to_dict() == dataclasses.replace(status, **changes).to_dict()
    assert status.pid is None and copy is not status  # the original is untouched
    assert hash(frozen.replace(LastLog("a", "b"), text="c")) == hash(LastLog("a", "c"))


def test_a_name_that_is_no_field_is_refused_as_dataclasses_do():
    with pytest.raises(TypeError, match="no field nope"):
        frozen.replace(Cursor(), nope=1)


def test_a_dataclass_with_its_own_init_work_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            assert self.n >= 0

    with pytest.raises(TypeError, match="not a plain dataclass"):
        frozen.replace(Checked(1), n=2)
