"""Refresh behaviour over time: WeChat failures, expiry, cron, background refresh, restarts."""

import time

import pytest

from fake_wechat import FAKE_EGRESS_IP
from harness import ATTEMPTS_PER_REFRESH, wait_for
from test_api import assert_error, assert_token_answer


class TestWeChatFailures:
    """No minimum interval, so every read of a cold account calls WeChat."""

    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers):
        return class_workers(MIN_REFRESH_INTERVAL_SECS="0")

    # 45009 (quota) pauses the account for the day: tests/test_operations.py.
    @pytest.mark.parametrize("mode, status, code, errcode, calls", [
        ("busy", 502, "wechat_error", -1, ATTEMPTS_PER_REFRESH),
        ("http_500", 502, "upstream_http_error", None, ATTEMPTS_PER_REFRESH),
        ("truncated", 502, "upstream_bad_response", None, 1),
        ("slow", 504, "upstream_timeout", None, 1),
    ])
    def test_cold_read_reports_the_failure(self, worker, fake, mode, status, code, errcode, calls):
        fake.mode = mode
        body = assert_error(worker.get_token(), status, code)
        assert body.get("wechat_errcode") == errcode
        if errcode is not None:
            assert body["wechat_errmsg"]
        assert fake.calls == calls

    def test_ip_whitelist_error_names_the_ip_and_the_fixes(self, worker, fake):
        fake.mode = "ip_not_whitelisted"
        body = assert_error(worker.get_token(), 502, "wechat_error")
        assert body["wechat_errcode"] == 40164
        assert FAKE_EGRESS_IP in body["message"]
        assert "whitelist" in body["message"]
        assert "WECHAT_API_BASE" in body["message"]

    def test_current_token_is_kept_while_wechat_fails(self, worker, fake):
        token = assert_token_answer(worker.get_token(), fake)["access_token"]
        fake.mode = "busy"
        assert_error(worker.refresh(), 502, "wechat_error")
        for _ in range(3):
            assert_token_answer(worker.get_token(), fake, token)
        fake.mode = "ok"
        fresh = assert_token_answer(worker.refresh(), fake)["access_token"]
        assert fresh != token
        assert_token_answer(worker.get_token(), fake, fresh)


class TestExpiry:
    """Tokens that live 2 s (too short for KV, so every read asks the Durable Object)."""

    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers):
        return class_workers(REFRESH_MARGIN_SECS="0")

    def test_an_expired_token_is_never_served(self, worker, fake):
        fake.expires_in = 2
        first = assert_token_answer(worker.get_token(), fake)["access_token"]
        time.sleep(2.2)
        # Inside the 30 s interval, but the old token is gone: fetching is the only way.
        second = assert_token_answer(worker.get_token(), fake)["access_token"]
        assert second != first
        assert fake.calls == 2

        fake.mode = "busy"
        time.sleep(2.2)
        body = assert_error(worker.get_token(), 502, "wechat_error")
        assert fake.calls == 2 + ATTEMPTS_PER_REFRESH

        # WeChat just failed and nothing valid is left: 503 with that failure, no new call.
        reply = worker.get_token()
        body = assert_error(reply, 503, "no_valid_token")
        assert body["wechat_errcode"] == -1
        assert 1 <= int(reply.headers["retry-after"]) <= 60
        assert fake.calls == 2 + ATTEMPTS_PER_REFRESH
        assert second not in reply.text


class TestCronAndBackground:
    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers):
        # The cron and background refreshes alone: no alarm refreshes a due token first.
        return class_workers(MIN_REFRESH_INTERVAL_SECS="1", TEST_NO_DUE_ALARMS="1")

    def fire_cron_and_settle(self, worker):
        """Fires the cron trigger and waits for the worker's log line about it."""
        return worker.run_cron()[-1]

    @staticmethod
    def force_a_token_living(worker, fake, expires_in):
        """After the 1 s interval, a forced refresh to a token that lives `expires_in` s."""
        time.sleep(1.1)
        fake.expires_in = expires_in
        token = assert_token_answer(worker.refresh(), fake)["access_token"]
        fake.expires_in = 7200
        return token

    @staticmethod
    def cron_events(worker):
        return [e for e in worker.json_log_events() if e["event"] == "cron"]

    def test_cron_does_nothing_outside_the_margin(self, worker, fake):
        assert_token_answer(worker.get_token(), fake)
        assert self.fire_cron_and_settle(worker)["outcome"] == "skipped"
        assert fake.calls == 1

    def test_cron_refreshes_inside_the_margin(self, worker, fake):
        due = self.force_a_token_living(worker, fake, 600)
        time.sleep(1.1)
        assert self.fire_cron_and_settle(worker)["outcome"] == "refreshed"
        assert fake.calls == 2
        fresh = assert_token_answer(worker.get_token(), fake)
        assert fresh["access_token"] != due
        assert fresh["expires_in"] > 7000
        assert self.fire_cron_and_settle(worker)["outcome"] == "skipped"
        assert fake.calls == 2

    def test_a_read_inside_the_margin_answers_at_once_and_refreshes_behind(self, worker, fake):
        due = self.force_a_token_living(worker, fake, 600)
        fake.latency_ms = 2000  # WeChat answers the refresh after 2 s
        time.sleep(1.1)
        # The token it had: a read that waited for the refresh would get the new one.
        assert_token_answer(worker.get_token(), fake, due)
        assert wait_for(lambda: fake.calls == 2 and fake.in_flight == 0, 15)
        assert wait_for(lambda: worker.get_token().json["access_token"] == fake.current_token)
        assert fake.calls == 2

    def test_a_token_shorter_lived_than_kvs_minimum_is_served_and_refreshed(self, worker, fake):
        # 50 s is under KV's 60 s minimum expiration; the entry's own freshness bounds it.
        due = self.force_a_token_living(worker, fake, 50)
        time.sleep(1.1)
        assert_token_answer(worker.get_token(), fake, due)
        # Readers keep reading; their isolate asks for a refresh every few seconds.
        assert wait_for(lambda: worker.get_token().status == 200 and fake.calls == 2
                        and fake.in_flight == 0)
        assert_token_answer(worker.get_token(), fake, fake.current_token)

    def test_cron_logs_a_failed_refresh_and_the_token_is_still_served(self, worker, fake):
        due = self.force_a_token_living(worker, fake, 600)
        fake.mode = "busy"
        time.sleep(1.1)
        event = self.fire_cron_and_settle(worker)
        assert event["status"] == 502
        assert event["outcome"] == "wechat_error"
        assert fake.calls == 1 + ATTEMPTS_PER_REFRESH
        fake.mode = "ok"
        assert_token_answer(worker.request("GET", "/token"), fake, due)


def test_the_token_survives_a_restart(start_worker, fake, tmp_path):
    worker = start_worker(persist_dir=str(tmp_path / "state"))
    token = assert_token_answer(worker.get_token(), fake)["access_token"]
    worker.restart()
    assert_token_answer(worker.get_token(), fake, token)
    # The Durable Object kept it too (not only KV): an old stale token gets the current one.
    assert_token_answer(worker.refresh("FAKE-an-older-token"), fake, token)
    assert fake.calls == 1
