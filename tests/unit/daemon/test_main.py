"""SIGHUP: whatever goes wrong while new settings are read or applied, the daemon goes on with
the settings it had."""

from __future__ import annotations

import pytest

from codexd.config import settings
from codexd.daemon import main

pytestmark = pytest.mark.timeout(30)


class FakeSupervisor:
    def __init__(self, current: settings.Settings, fail_on: int | None) -> None:
        self.settings = current
        self.applied: list[settings.Settings] = []
        self.fail_on = fail_on

    def reload(self, new: settings.Settings) -> None:
        self.applied.append(new)
        if len(self.applied) == self.fail_on:
            raise RuntimeError("the scheduler refused the new interval")
        self.settings = new


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[health]\ninterval = 7\n")
    return path


def test_an_exception_while_applying_puts_the_old_settings_back(config):
    old = settings.Settings()
    fake = FakeSupervisor(old, fail_on=1)
    main._reload(fake, config)  # type: ignore[arg-type]
    assert [s.health.interval for s in fake.applied] == [7, old.health.interval]
    assert fake.settings is old


def test_an_exception_while_reading_keeps_the_settings(config, monkeypatch):
    def broken(_config):
        raise KeyError("something nobody foresaw")

    monkeypatch.setattr(settings, "load", broken)
    fake = FakeSupervisor(settings.Settings(), fail_on=None)
    main._reload(fake, config)  # type: ignore[arg-type]
    assert fake.applied == []


def test_good_settings_are_applied(config):
    fake = FakeSupervisor(settings.Settings(), fail_on=None)
    main._reload(fake, config)  # type: ignore[arg-type]
    assert fake.settings.health.interval == 7
