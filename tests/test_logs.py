"""The worker's log: one JSON line per upstream call, never a secret, a token or the URL."""

import hashlib

from conftest import assert_log_keeps_secrets
from harness import ATTEMPTS_PER_REFRESH, CLIENT_KEY


def test_log_lines_are_structured_and_keep_secrets(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0")
    assert worker.get_token().status == 200
    assert worker.refresh().status == 200
    fake.mode = "busy"
    assert worker.refresh().status == 502
    fake.mode = "ok"
    assert worker.run_cron()[-1]["outcome"] == "skipped"
    worker.stop()

    calls = [e for e in worker.json_log_events() if e["event"] == "upstream_call"]
    retries = ATTEMPTS_PER_REFRESH
    assert [c["outcome"] for c in calls] == ["ok", "ok"] + ["wechat_error"] * retries
    assert [c["trigger"] for c in calls] == ["read"] + ["passive"] * (1 + retries)
    assert [c["attempt"] for c in calls] == [1, 1] + list(range(1, retries + 1))
    assert calls[-1]["wechat_errcode"] == -1
    for call in calls:
        assert call["account"] == fake.appid
        assert call["api"] == "classic" and call["credential"] == "token"
        assert isinstance(call["duration_ms"], int)
    # A successful call names the new token by its fingerprint only.
    fingerprints = [c["fingerprint"] for c in calls[:2]]
    assert fingerprints == [hashlib.sha256(t.encode()).hexdigest()[:8] for t in fake.issued]
    assert calls[-1]["fingerprint"] is None

    decisions = [e for e in worker.json_log_events() if e["event"] == "refresh_decision"]
    assert {d["trigger"] for d in decisions} >= {"read", "passive", "cron"}
    for decision in decisions:
        assert set(decision) >= {"account", "api", "credential", "trigger", "decision", "fingerprint"}

    log = worker.log()
    assert "/cgi-bin/token" not in log, "the upstream URL (it carries the secret) was logged"
    assert fake.secret not in log
    assert CLIENT_KEY not in log
    assert len(fake.all_issued) >= 2
    assert_log_keeps_secrets(worker, fake)
