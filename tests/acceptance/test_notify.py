"""Notices as a user gets them: a real daemon, apprise, and an endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import time

import pytest

from codexd.notify.redact import mask_url
from tests import sink
from tests.conftest import wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(60)]

# A "codex" that finishes its turn at once.
QUICK = json.dumps(["/bin/sh", "-c", """echo '{"type":"turn.started"}'; echo '{"type":"turn.completed"}'"""])
SECRET = "S3cretT0ken42xyz"


def start_task(env, task_id: str, front: str = "") -> str:
    text = (f"+++\n{front}\n+++\n" if front else "") + "Do it.\n"
    done = env.codexd("start", "--instructions", "-", "--task-id", task_id, input=text.encode())
    assert done.returncode == 0, done.stderr
    return task_id


def ended(env, task_id: str, timeout: float = 15) -> dict:
    return wait_for(
        lambda: (
            (env.tasks / task_id / "status.json").exists()
            and (s := env.status(task_id))["status"] in ("completed", "failed", "cancelled")
            and s
        ),
        timeout,
        f"{task_id} to end",
    )


def use(env, *urls: str, **settings: str) -> None:
    quick = {"CODEXD_NOTIFY__BACKOFF": "0.2", "CODEXD_NOTIFY__BACKOFF_MAX": "0.5"}
    env.set(CODEXD_CODEX__COMMAND=QUICK, CODEXD_NOTIFY__URLS=json.dumps(list(urls)), **{**quick, **settings})


def pending(env) -> list[str]:
    return sorted(p.name for p in (env.tasks / ".outbox").glob("*.json"))


def test_a_completion_notice_arrives_once_with_its_type_and_title(env, daemon):
    with sink.serve() as hook:
        use(env, hook.url())
        daemon()
        start_task(env, "t1")
        assert ended(env, "t1")["status"] == "completed"
        wait_for(lambda: hook.received, 10, "the notice")
        time.sleep(0.5)  # room for a second delivery, which must not come
        [notice] = hook.received
        assert notice["title"] == "Codex task completed: t1"
        assert notice["type"] == "success"
        assert "Type: generic" in notice["message"] and "Details: codexd report t1" in notice["message"]
        assert pending(env) == []


def test_an_endpoint_down_across_a_daemon_restart_still_gets_exactly_one_notice(env, daemon):
    down = {"yes": True}
    with sink.serve(lambda n: 503 if down["yes"] else 200) as hook:
        use(env, hook.url())
        first = daemon()
        start_task(env, "t1")
        ended(env, "t1")
        wait_for(lambda: hook.refused >= 2, 10, "two refused deliveries")
        assert first.stop() == 0
        assert len(pending(env)) == 1  # it waits in the outbox, on disk
        down["yes"] = False
        second = daemon()
        wait_for(lambda: hook.received, 10, "the notice after the restart")
        wait_for(lambda: not pending(env), 5, "the outbox to empty")
        time.sleep(0.5)
        assert len(hook.received) == 1 and hook.received[0]["title"] == "Codex task completed: t1"
        assert "notice.resumed" in second.output() and "notice.failed" in second.output()


def test_an_endpoint_that_never_answers_delays_nothing_else(env, daemon):
    with sink.serve(lambda n: sink.HANG) as dead, sink.serve() as alive:
        use(env, dead.url(), alive.url(), CODEXD_NOTIFY__TIMEOUT="30")
        daemon()
        start_task(env, "t1")
        ended(env, "t1")
        wait_for(lambda: dead.requests >= 1, 10, "the hanging delivery")
        began = time.monotonic()
        start_task(env, "t2")
        assert ended(env, "t2")["status"] == "completed"
        handled = time.monotonic() - began
        wait_for(lambda: len(alive.received) == 2, 10, "both notices at the live endpoint")
        assert dead.requests == 1  # still hanging on the first; the second waits its turn
        assert handled < 3, f"the second task took {handled:.2f}s to be handled"


def test_a_notice_never_delivered_is_given_up_and_recorded(env, daemon):
    with sink.serve(lambda n: 500) as hook:
        use(env, hook.url("hook/" + SECRET), CODEXD_NOTIFY__EXPIRE="1")
        d = daemon()
        start_task(env, "t1")
        ended(env, "t1")
        log = env.tasks / "t1" / "progress.log"
        wait_for(lambda: "Notice undeliverable" in log.read_text(), 10, "the note in progress.log")
        line = log.read_text().splitlines()[-1]
        assert f"completed to {mask_url(hook.url('hook/' + SECRET))}: not delivered within 1s" in line
        assert "last error: Failed to send JSON POST notification" in line
        assert pending(env) == [] and len(list((env.tasks / ".outbox" / "failed").iterdir())) == 1
        assert "notice.undeliverable" in d.output()
        shown = env.codexd("notify", "outbox")
        assert shown.returncode == 0 and "given up  t1  completed" in shown.stdout
        assert SECRET not in shown.stdout + line


def test_secrets_stay_out_of_logs_settings_and_messages(env, daemon):
    with sink.serve(lambda n: 500) as hook:
        url = f"json://user:{SECRET}@127.0.0.1:{hook.port}/hook/{SECRET}"
        use(env, url, f"ops=discord://4174216298/{SECRET}", CODEXD_DAEMON__LOG_LEVEL="debug")
        d = daemon()
        start_task(env, "t1", front=f'notify_urls = ["json://127.0.0.1:{hook.port}/own/{SECRET}"]')
        ended(env, "t1")
        wait_for(lambda: hook.refused >= 2, 10, "failed deliveries")
        d.signal(signal.SIGTERM)
        d.proc.wait(10)
        outputs = [
            d.output(),
            env.codexd("config", "show").stdout,
            env.codexd("notify", "outbox", "--json").stdout,
            env.codexd("doctor").stdout,
            env.codexd("status", "t1", "--json").stdout,
            (env.tasks / "t1" / "progress.log").read_text(),
        ]
        for text in outputs:
            assert SECRET not in text
        assert "notice.failed" in outputs[0] and mask_url(url) in outputs[0]
        assert f"ops={mask_url(f'discord://4174216298/{SECRET}')}" in outputs[1]


def test_notify_test_reports_each_url(env):
    with sink.serve() as good, sink.serve(lambda n: 500) as bad:
        use(env, good.url(), bad.url("x/" + SECRET), "bogus://nothing")
        done = env.codexd("notify", "test")
        assert done.returncode == 1
        lines = done.stdout.splitlines()
        assert lines[0] == f"ok    {mask_url(good.url())}"
        assert lines[1].startswith(
            f"FAIL  {mask_url(bad.url('x/' + SECRET))}: Failed to send JSON POST notification"
        )
        assert lines[2].startswith(f"FAIL  {mask_url('bogus://nothing')}: unknown kind of URL 'bogus'")
        assert good.titles() == ["codexd test notice"] and SECRET not in done.stdout
        one = env.codexd("notify", "test", "--url", good.url())
        assert one.returncode == 0 and len(good.received) == 2
    use(env)
    none = env.codexd("notify", "test")
    assert none.returncode == 1 and "no notification URLs: add notify.urls" in none.stderr


def test_config_check_and_doctor_name_unusable_urls(env):
    use(env, "macosx://?sound=Glass")
    checked = env.codexd("config", "check")
    assert checked.returncode == 0, checked.stderr
    assert "warning: notify.urls: macosx://?sound=Glass: cannot work on this machine" in checked.stderr
    use(env, "json://127.0.0.1:9/ok", f"slack://{SECRET}")
    checked = env.codexd("config", "check")
    assert checked.returncode == 2
    assert checked.stderr.strip() == (
        f"codexd: notify.urls: {mask_url(f'slack://{SECRET}')}: is not a valid Slack URL: "
        "check it against apprise's docs"
    )
    doctor = env.codexd("doctor")
    assert f"ok    notify: {mask_url('json://127.0.0.1:9/ok')} (try it: codexd notify test)" in doctor.stdout
    assert f"FAIL  notify: {mask_url(f'slack://{SECRET}')}: is not a valid Slack URL" in doctor.stdout
    assert doctor.returncode == 1 and SECRET not in doctor.stdout + checked.stderr


def test_notify_outbox_tells_four_urls_on_one_host_apart_without_their_secrets(env, daemon):
    with sink.serve(lambda n: 500) as hook:
        urls = [hook.url(f"hooks/{SECRET}{n}") for n in range(4)]
        use(env, *urls, CODEXD_NOTIFY__BACKOFF="30", CODEXD_NOTIFY__BACKOFF_MAX="30")
        daemon()
        start_task(env, "t1")
        ended(env, "t1")
        wait_for(lambda: hook.refused >= 4, 10, "a failed delivery to each URL")
        shown = env.codexd("notify", "outbox")
        lines = shown.stdout.splitlines()
        assert shown.returncode == 0 and len(lines) == 4 and SECRET not in shown.stdout
        assert {line.split()[3] for line in lines} == {mask_url(u) for u in urls}
        assert len({mask_url(u) for u in urls}) == 4
        assert all(mask_url(u).startswith(f"json://127.0.0.1:{hook.port}/****#") for u in urls)
