"""The worker's log: one JSON line per upstream call, never a secret, a token or the URL."""

from conftest import assert_log_keeps_secrets
from harness import CLIENT_KEY


def test_log_lines_are_structured_and_keep_secrets(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0")
    assert worker.get_token().status == 200
    assert worker.refresh().status == 200
    fake.mode = "busy"
    assert worker.refresh().status == 502
    fake.mode = "ok"
    assert worker.fire_cron().status == 200
    worker.stop()

    calls = [e for e in worker.json_log_events() if e["event"] == "upstream_call"]
    assert [c["outcome"] for c in calls] == ["ok", "ok", "wechat_error"]
    assert [c["trigger"] for c in calls] == ["read", "passive", "passive"]
    assert calls[-1]["wechat_errcode"] == -1
    for call in calls:
        assert call["account"] == fake.appid
        assert isinstance(call["duration_ms"], int)

    log = worker.log()
    assert "/cgi-bin/token" not in log, "the upstream URL (it carries the secret) was logged"
    assert fake.secret not in log
    assert CLIENT_KEY not in log
    assert len(fake.all_issued) >= 2
    assert_log_keeps_secrets(worker, fake)
