"""Numbers on the command line: counts are whole numbers from 0, durations finite seconds from 0
to a year; anything else gets one line and exit 2, never a traceback or a wait for ever."""

from __future__ import annotations

import pytest

from codexd.tasks.states import TaskState
from tests.acceptance.test_cli import one_line_error
from tests.acceptance.test_monitor_and_logs import make_task

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(60)]


@pytest.mark.parametrize("value", ["²", "٣x", "-1", "1.5", "", "ten"])
def test_logs_n_is_a_whole_number_from_0(env, value):
    make_task(env)  # a task the quick front door answers for
    one_line_error(env.codexd("logs", "t1", "-n", value), 2, "-n", "whole number")


@pytest.mark.parametrize(
    "args",
    [
        ["wait", "t1", "--timeout"],
        ["stop", "t1", "--timeout"],
        ["restart", "t1", "--timeout"],
    ],
)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "Infinity", "-1", "1e300", "ten", "NaN"])
def test_every_duration_is_finite_seconds_from_0(env, args, value):
    make_task(env, state=TaskState.IN_PROGRESS)
    one_line_error(env.codexd(*args, value, timeout=10), 2, "--timeout", "number of seconds")


def test_good_numbers_still_work(env):
    make_task(env)
    assert env.codexd("logs", "t1", "-n", "3").returncode == 0
    assert env.codexd("wait", "t1", "--timeout", "0.1").returncode == 124
    assert env.codexd("wait", "t1", "--timeout", "1e-1").returncode == 124


def test_progress_total_is_a_whole_number_from_0(env):
    make_task(env)
    one_line_error(env.codexd("progress", "--task", "t1", "--total", "²"), 2, "--total", "whole number")
