"""Notices: what they say, what apprise sends to Slack, Discord and macOS, the outbox, the
courier's lanes and retries with a fake clock, routing by tags, and secrets kept out of text."""

from __future__ import annotations

import json
import logging
import stat
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from codexd.clock import FakeClock
from codexd.config.settings import NotifySettings
from codexd.daemon import logsetup
from codexd.notify import endpoints, notices, redact
from codexd.notify.courier import Courier
from codexd.notify.dispatch import Notifications
from codexd.notify.endpoints import Attempt
from codexd.notify.outbox import Delivery, Outbox
from codexd.tasks.records import Item, LastLog, Progress, TaskStatus
from codexd.tasks.states import TaskState
from codexd.tasks.store import TaskStore
from tests import sink

pytestmark = pytest.mark.timeout(30)
NOW = datetime(2025, 10, 31, 13, 2, 0, tzinfo=UTC)
SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#reviews"
DISCORD = "https://discord.com/api/webhooks/4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js"


def review(**changes: Any) -> TaskStatus:
    items = (Item("#626 - toml upgrade", "approved"), Item("#602 - crossterm upgrade", "changes_requested"))
    status = TaskStatus(
        task_id="codex-pr-review-2025-10-31",
        type="pr_review",
        status=TaskState.COMPLETED,
        created_at="2025-10-31T11:50:00Z",
        updated_at="2025-10-31T13:02:00Z",
        log_file="-",
        started_at="2025-10-31T11:50:01Z",
        finished_at="2025-10-31T13:02:00Z",
        progress=Progress(total=19, completed=19, items=items),
        results={"approved": 15, "changes_requested": 3, "commented": 1},
    )
    return replace(status, **changes)


# -- what a notice says --------------------------------------------------------------------


def test_a_completed_review_names_the_task_and_counts_each_verdict():
    notice = notices.render(review(), "completed", NOW)
    assert notice.title == "Codex task completed: codex-pr-review-2025-10-31"
    assert notice.kind == "success" and notice.key == "codex-pr-review-2025-10-31.completed"
    assert notice.text.splitlines() == [
        "Type: pr_review · Duration: 1h11m",
        "Total PRs: 19 · ✅ Approved: 15 · ⚠️ Changes requested: 3 · 💬 Commented: 1",
        "Details: codexd report codex-pr-review-2025-10-31",
    ]
    assert (
        notice.lead == "Type: pr_review · Duration: 1h11m\nDetails: codexd report codex-pr-review-2025-10-31"
    )
    assert [(f.name, f.value, f.short) for f in notice.fields] == [
        ("Total PRs", "19", True),
        ("✅ Approved", "15", True),
        ("⚠️ Changes requested", "3", True),
        ("💬 Commented", "1", True),
    ]
    assert "#" not in notice.markdown  # no `# Heading` sections for apprise to parse (and drop)


def test_a_failure_carries_its_error_and_a_stall_what_happened():
    failed = review(status=TaskState.FAILED, error="stalled: no progress for 15m00s", restarts=3)
    notice = notices.render(failed, "failed", NOW)
    assert notice.kind == "failure" and "Error: stalled: no progress for 15m00s" in notice.text
    assert "Restarts: 3" in notice.text
    running = review(
        status=TaskState.STALLED,
        finished_at=None,
        stalls=2,
        results={},
        progress=Progress(total=19, completed=5, current="#602 - crossterm upgrade"),
        last_log=LastLog("2025-10-31T13:00:00Z", "Stalled: no progress for 15m00s"),
    )
    stalled = notices.render(running, "stalled", NOW)
    assert stalled.kind == "warning" and stalled.key == "codex-pr-review-2025-10-31.stalled.2"
    assert stalled.text.splitlines()[:3] == [
        "Type: pr_review · Running for: 1h11m",
        "Total PRs: 5/19",
        "Current: #602 - crossterm upgrade",
    ]
    assert "What happened: Stalled: no progress for 15m00s" in stalled.text


# -- what apprise sends (its payload; no live service) ---------------------------------------


SLACK_HOOK = "/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
SEED_FIELDS = [
    ("Total PRs", "19"),
    ("✅ Approved", "15"),
    ("⚠️ Changes requested", "3"),
    ("💬 Commented", "1"),
]


def send(url: str, notice: notices.Notice) -> Attempt:
    return endpoints.send(url, notice, 10)


def received(*urls_and_notices: tuple[str, notices.Notice]) -> list[dict[str, Any]]:
    """What a local sink standing in for Slack's and Discord's webhooks got, in order."""
    with sink.serve() as got, sink.aimed(got):
        for url, notice in urls_and_notices:
            assert send(url, notice).error is None
        return got.received


def test_slack_gets_the_seeds_fields_in_an_attachment_coloured_by_outcome():
    done, failed = notices.render(review(), "completed", NOW), review(status=TaskState.FAILED, error="boom")
    stalled = review(status=TaskState.STALLED, finished_at=None, results={}, progress=Progress(total=19))
    late, broke = notices.render(stalled, "stalled", NOW), notices.render(failed, "failed", NOW)
    ok, bad, slow = received((SLACK, done), (SLACK, broke), (SLACK, late))
    assert ok["path"] == SLACK_HOOK and ok["channel"] == "#reviews"
    attachment = ok["attachments"][0]
    assert attachment["title"] == "Codex task completed: codex-pr-review-2025-10-31"
    assert attachment["text"] == done.lead and attachment["footer"] == "codexd"
    assert attachment["fields"] == [{"title": k, "value": v, "short": True} for k, v in SEED_FIELDS]
    assert attachment["color"] == "#3AA337"  # green: completed
    assert bad["attachments"][0]["color"] == "#A32037"  # red: failed
    assert {"title": "Error", "value": "boom", "short": False} in bad["attachments"][0]["fields"]
    assert slow["attachments"][0]["color"] == "#CACF29"  # yellow: stalled (and cancelled)


def test_slack_block_kit_gets_the_fields_as_a_section():
    [payload] = received((SLACK + "?blocks=yes", notices.render(review(), "completed", NOW)))
    sections = [b for b in payload["attachments"][0]["blocks"] if "fields" in b]
    assert [cell["text"] for cell in sections[0]["fields"]] == [f"*{k}*\n{v}" for k, v in SEED_FIELDS]


def test_discord_gets_an_embed_with_every_count_as_a_field_the_last_one_too():
    notice = notices.render(review(), "completed", NOW)
    [payload] = received((DISCORD, notice))
    assert payload["path"] == "/api/webhooks/4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js"
    embed = payload["embeds"][0]
    assert embed["title"] == "Codex task completed: codex-pr-review-2025-10-31"
    assert embed["author"]["name"] == "codexd" and embed["color"] == 0x3AA337
    # apprise's own Markdown parsing left "💬 Commented" empty: its text was one character
    assert embed["fields"] == [{"name": k, "value": v, "inline": True} for k, v in SEED_FIELDS]
    assert embed["description"] == notice.markdown and "codexd report codex-pr-review" in embed["description"]


def test_discord_with_fields_no_gets_the_embed_without_fields_and_the_counts_in_its_text():
    notice = notices.render(review(), "completed", NOW)
    [payload] = received((DISCORD + "?fields=no", notice))
    embed = payload["embeds"][0]
    assert "fields" not in embed
    assert "Approved" in embed["description"] and "15" in embed["description"]


def test_the_fields_survive_the_outbox(tmp_path):
    notice = notices.render(review(status=TaskState.FAILED, error="boom"), "failed", NOW)
    made = Delivery("k", "t1", "failed", SLACK, notice.title, notice.text, notice.markdown, notice.kind, 1.0)
    made = replace(made, lead=notice.lead, fields=notice.fields)
    box = Outbox(tmp_path)
    box.open()
    box.put(made)
    assert box.pending() == [made]


def test_macos_gets_terminal_notifier_with_the_sound(monkeypatch, tmp_path):
    from apprise.plugins.macosx import NotifyMacOSX

    calls = tmp_path / "calls"
    notifier = tmp_path / "terminal-notifier"
    notifier.write_text(
        f'#!/bin/sh\n[ "$1" = -version ] && echo "terminal-notifier 2.0.0." && exit 0\n'
        f'printf "%s\\n" "$@" > {calls}\n'
    )
    notifier.chmod(notifier.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(NotifyMacOSX, "enabled", True)
    monkeypatch.setattr(NotifyMacOSX, "notify_paths", (str(notifier),))
    assert send("macosx://?sound=Glass", notices.render(review(), "completed", NOW)).error is None
    argv = calls.read_text().splitlines()
    assert argv[argv.index("-title") + 1] == "\\Codex task completed: codex-pr-review-2025-10-31"
    assert argv[argv.index("-sound") + 1] == "\\Glass"
    assert argv[argv.index("-sender") + 1] == "\\codexd"


def test_a_url_that_cannot_work_here_is_named_and_never_retried():
    if sys.platform == "darwin":
        pytest.skip("macosx:// works on macOS")
    found = endpoints.problem("macosx://?sound=Glass")
    assert found is not None and found.platform and "cannot work on this machine" in found.text
    bad = endpoints.problem(f"slack://{'x' * 3}")
    assert bad is not None and not bad.platform and "not a valid Slack URL" in bad.text
    assert endpoints.send("bogus://x", notices.test_notice("h", []), 1) == Attempt(
        "unknown kind of URL 'bogus': see apprise's list of services", final=True
    )


# -- the outbox and the courier ---------------------------------------------------------------


START = FakeClock().now().timestamp()


def delivery(key: str, url: str = "json://a/1", created_at: float = 0.0) -> Delivery:
    """A delivery made `created_at` seconds after the fake clock's start."""
    return Delivery(key, "t1", "completed", url, "title", "text", "md", "success", START + created_at)


class Endpoints:
    """Fake endpoints: each URL answers from its script of errors (None: delivered)."""

    def __init__(self, **scripts: list[str | None]):
        self.scripts = scripts
        self.sent: list[tuple[str, str]] = []
        self.tried: list[str] = []

    def __call__(self, d: Delivery, timeout: float) -> Attempt:
        self.tried.append(d.key)
        script = self.scripts.get(d.url.split("/")[-1], [])
        error = script.pop(0) if script else None
        if error is None:
            self.sent.append((d.url, d.key))
        return Attempt(error, final=error == "final")


class Harness:
    def __init__(self, tmp: Path, fake: Endpoints, **policy: float):
        self.clock = FakeClock()
        self.box = Outbox(tmp)
        self.box.open()
        self.fake = fake
        self.given_up: list[tuple[str, str]] = []
        self.courier = Courier(
            self.box,
            NotifySettings(**{"backoff": 10, "backoff_max": 60, "expire": 3600, **policy}),
            fake,
            lambda d, why: self.given_up.append((d.key, why)),
            self.clock,
        )

    def put(self, *deliveries: Delivery) -> None:
        for d in deliveries:
            if self.box.put(d):
                self.courier.add(d)

    def pump(self) -> float:
        """One pass, then wait for the senders it started."""
        wait = self.courier.pump()
        for sender in list(self.courier._senders):
            sender.join(5)
        return wait


def test_a_failing_endpoint_backs_off_alone_while_the_others_go_on(tmp_path):
    h = Harness(tmp_path, Endpoints(down=["503", "503"]))
    h.put(delivery("a", "json://x/down"), delivery("b", "json://x/up"), delivery("c", "json://x/down", 1))
    h.pump()
    assert h.fake.sent == [("json://x/up", "b")] and h.fake.tried == ["a", "b"]
    h.clock.advance(9.9)
    h.pump()
    assert h.fake.tried == ["a", "b"]  # the down lane waits out its 10 s backoff
    h.clock.advance(0.1)
    h.pump()
    h.clock.advance(19.9)
    h.pump()
    assert h.fake.tried == ["a", "b", "a"]  # 20 s after the second failure, not yet
    h.clock.advance(0.1)
    h.pump()
    h.pump()
    assert h.fake.sent == [("json://x/up", "b"), ("json://x/down", "a"), ("json://x/down", "c")]
    assert list((tmp_path / ".outbox" / "failed").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / ".outbox" / "sent").iterdir()) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("asked", "wait"),
    [
        ("120", 120.0),
        ("Fri, 31 Oct 2025 12:05:00 GMT", 300.0),  # an HTTP date: 5 minutes after the fake clock's now
        ("Fri, 31 Oct 2025 11:00:00 GMT", None),  # in the past: our own backoff
        ("in a while", None),
        ("999999", 3600.0),  # capped at an hour
    ],
)
def test_a_retry_after_of_seconds_or_a_date_is_waited_out_capped_at_an_hour(tmp_path, asked, wait):
    h = Harness(tmp_path, Endpoints(), backoff=10, backoff_max=60, expire=86400)
    h.courier._send = lambda d, timeout: (h.fake.tried.append(d.key), Attempt("429", retry_after=asked))[1]
    h.put(delivery("a", "json://x/busy"))
    h.pump()
    assert h.fake.tried == ["a"]
    waited = wait or 10.0
    h.clock.advance(waited - 0.1)
    h.pump()
    assert h.fake.tried == ["a"]  # not before the endpoint said
    h.clock.advance(0.1)
    h.pump()
    assert h.fake.tried == ["a", "a"]


def test_the_sink_answering_429_with_retry_after_is_tried_again_only_after_it(tmp_path):
    from codexd.notify.dispatch import _deliver

    with sink.serve(lambda n: 429 if n == 1 else 200) as got:
        got.headers["Retry-After"] = "30"
        h = Harness(tmp_path, Endpoints())
        h.courier._send = _deliver
        h.put(delivery("a", got.url()))
        h.pump()
        assert got.refused == 1 and h.box.pending()[0].last_error  # 429, and kept
        h.clock.advance(29.9)  # our own backoff (10 s) is long over
        h.pump()
        assert got.requests == 1
        h.clock.advance(0.1)
        h.pump()
        assert got.requests == 2 and got.titles() == ["title"] and h.box.pending() == []


def test_only_a_429_or_503_is_asked_when_to_come_back():
    notice = notices.test_notice("h", [])
    for status, heard in ((429, "7"), (503, "7"), (500, None)):
        with sink.serve(lambda n, status=status: status) as got:
            got.headers["Retry-After"] = "7"
            assert endpoints.send(got.url(), notice, 5).retry_after == heard
    assert endpoints.send("bogus://x", notice, 1).retry_after is None


def test_a_notice_is_given_up_when_it_expires_or_its_url_can_never_work(tmp_path):
    h = Harness(tmp_path, Endpoints(down=["503"] * 10, broken=["final"]), expire=60)
    h.put(delivery("old", "json://x/down"), delivery("bad", "json://x/broken"))
    h.pump()
    assert h.given_up == [("bad", "final")]
    h.clock.advance(60)
    h.pump()
    assert [k for k, _ in h.given_up] == ["bad", "old"]
    assert "not delivered within 1m00s (1 attempts; last error: 503)" in h.given_up[1][1]
    failed = json.loads((tmp_path / ".outbox" / "failed" / "old.json").read_text())
    assert failed["reason"] == h.given_up[1][1] and h.box.pending() == []


def test_the_outbox_survives_a_restart_and_never_queues_a_notice_twice(tmp_path):
    first = Harness(tmp_path, Endpoints(down=["503"]))
    first.put(delivery("a", "json://x/down"))
    first.pump()
    assert first.box.pending()[0].attempts == 1
    assert not first.box.put(delivery("a", "json://x/down"))  # announced again after a crash
    second = Harness(tmp_path, Endpoints())
    second.courier.start()
    try:
        second.courier._wake.set()
        deadline = 50
        while second.box.pending() and deadline:
            second.pump()
            deadline -= 1
        assert second.fake.sent == [("json://x/down", "a")]
    finally:
        second.courier.stop(1)
    assert not second.box.put(delivery("a", "json://x/down"))  # sent: a repeat is dropped too


def test_a_file_sent_just_before_a_crash_is_not_sent_again(tmp_path):
    box = Outbox(tmp_path)
    box.open()
    box.put(delivery("a"))
    (box.dir / "sent" / "a").touch()  # the tombstone was made; the file was not yet removed
    assert box.pending() == [] and not (box.dir / "a.json").exists()


# -- who hears what --------------------------------------------------------------------------


def test_tagged_urls_hear_only_tasks_that_ask_and_a_task_may_add_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(endpoints, "problem", lambda url: None)
    tasks = TaskStore(tmp_path)
    for task_id, front in (
        ("plain", ""),
        ("ops-task", 'notify_tags = ["ops"]\nnotify_urls = ["json://own/x"]'),
    ):
        (tmp_path / task_id).mkdir()
        text = f"+++\n{front}\n+++\nDo it.\n" if front else "Do it.\n"
        (tmp_path / task_id / "instructions.md").write_text(text)
    settings = NotifySettings(urls=["json://all/x", "ops,infra=json://ops/x"], events=["completed"])
    n = Notifications(settings, tasks, FakeClock(), lambda task_id, line: None)
    n.outbox.open()
    n.announce(review(task_id="plain"), "completed")
    n.announce(review(task_id="ops-task"), "completed")
    n.announce(review(task_id="ops-task"), "stalled")  # not in notify.events
    heard = sorted((d.task_id, d.url) for d in n.outbox.pending())
    assert heard == [
        ("ops-task", "json://all/x"),
        ("ops-task", "json://ops/x"),
        ("ops-task", "json://own/x"),
        ("plain", "json://all/x"),
    ]


def test_who_hears_a_task_is_read_when_it_is_queued_not_what_its_agent_wrote_later(tmp_path, monkeypatch):
    """An agent that runs in its task folder can rewrite instructions.md: its front matter is
    read once, when the daemon takes the task, so the agent cannot add a listener."""
    monkeypatch.setattr(endpoints, "problem", lambda url: None)
    tasks = TaskStore(tmp_path)
    (tmp_path / "t1").mkdir()
    instructions = tmp_path / "t1" / "instructions.md"
    instructions.write_text('+++\nnotify_urls = ["json://own/x"]\n+++\nDo it.\n')
    settings = NotifySettings(urls=[], events=["failed"])
    n = Notifications(settings, tasks, FakeClock(), lambda task_id, line: None)
    n.outbox.open()
    n.announce(review(task_id="t1"), "queued")
    instructions.write_text('+++\nnotify_urls = ["json://attacker/x"]\n+++\nDo it.\n')
    n.announce(review(task_id="t1"), "failed")
    assert [d.url for d in n.outbox.pending()] == ["json://own/x"]


# -- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SLACK, "slack://****"),
        (DISCORD, "https://discord.com/****"),
        ("json://user:pw@127.0.0.1:8080/hook", "json://****@127.0.0.1:8080/****"),
        ("json://localhost", "json://localhost"),
        ("not a url", "****"),
    ],
)
def test_urls_are_shown_masked_with_the_start_of_their_id(url, shown):
    assert redact.mask_url(url) == f"{shown}#{redact.url_id(url)[:4]}"


def test_a_desktop_url_has_no_secret_and_is_shown_whole():
    assert redact.mask_url("macosx://?sound=Glass") == "macosx://?sound=Glass"


def test_four_urls_on_one_host_are_told_apart_without_their_secrets():
    urls = [f"slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi{n}FQ/#reviews" for n in range(4)]
    shown = [redact.mask_url(u) for u in urls]
    assert len(set(shown)) == 4 and all(s.startswith("slack://****#") for s in shown)
    assert not any(part in s for s in shown for part in ("T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkc"))


def test_a_secret_is_masked_in_any_log_line_even_a_traceback(capsys):
    redact.redact.add([SLACK])
    logsetup.configure("info", json_lines=True)
    try:
        raise RuntimeError(f"cannot post to {SLACK}; token TIiajkdnlazkcOXrIdevi7FQ refused")
    except RuntimeError:
        logging.getLogger("codexd.test").exception("failed")
    import structlog

    structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in err and "T1JJ3T3L2" not in err
    assert f"cannot post to {redact.mask_url(SLACK)}; token **** refused" in err
