"""Operating the server: /status, the quota pause, backoff while WeChat fails, credential
errors, the IP-whitelist family, request limits, HEAD and CORS."""

import hashlib
import json
import time
import urllib.parse

import pytest

from fake_wechat import FAKE_EGRESS_IP
from harness import ATTEMPTS_PER_REFRESH, CLIENT_KEY, next_beijing_midnight, wait_for
from setups import SCOPED_KEY, SECOND, several
from test_api import assert_error, assert_token_answer


def fingerprint(value):
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def status_of(worker, key=CLIENT_KEY):
    reply = worker.request("GET", "/status", key=key)
    assert reply.status == 200, reply.text
    return {entry["account"]: entry for entry in reply.json["accounts"]}, reply.text


def test_status_is_accurate_and_shows_no_credential(start_worker, fake):
    worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0"))
    worker.get_token()
    ticket = worker.request("GET", "/ticket?type=jsapi").json["ticket"]
    token = worker.request("POST", "/token/refresh").json["access_token"]
    fake.modes[SECOND[0]] = "busy"
    assert worker.request("GET", "/token?account=second").status == 502

    # The listing shows what each object reported after its visit.
    assert wait_for(lambda: status_of(worker)[0]["second"]["last_error"] is not None
                    and status_of(worker)[0][fake.appid]["tickets"], 10)
    accounts, text = status_of(worker)
    assert set(accounts) == {fake.appid, "second", "corp-app", "shop"}
    main = accounts[fake.appid]
    assert main["kind"] == "official_account" and main["api"] == "classic"
    assert main["token"]["fingerprint"] == fingerprint(token)
    assert main["token"]["expires_at"] - time.time() == pytest.approx(7200, abs=5)
    assert abs(main["token"]["refreshed_at"] - time.time()) < 10
    assert main["tickets"]["jsapi"]["fingerprint"] == fingerprint(ticket)
    assert main["tickets"]["jsapi"]["upstream_calls_today"] == 1
    assert main["upstream_calls_today"] == 2
    assert main["forced_refreshes_today"] == 0
    assert main["daily_quota"] == 2000
    assert main["auto_refresh"] == "on"
    assert main["last_error"] is None

    second = accounts["second"]
    assert second["token"] is None
    assert second["upstream_calls_today"] == ATTEMPTS_PER_REFRESH
    assert second["last_error"]["wechat_errcode"] == -1
    assert second["last_error"]["credential"] == "token"
    assert abs(second["last_error"]["at"] - time.time()) < 10
    # Never visited: listed with nothing reported; by name, its object answers live.
    assert accounts["shop"]["api"] == "stable" and accounts["shop"]["reported_at"] is None
    shop = worker.request("GET", "/status?account=shop").json["accounts"][0]
    assert shop["daily_quota"] == 500000
    corp = worker.request("GET", "/status?account=corp-app").json["accounts"][0]
    assert corp["api"] == "wecom" and corp["daily_quota"] == 2000
    assert shop["token"] is None and shop["upstream_calls_today"] == 0

    for secret_value in [token, ticket, *fake.all_issued, *fake.tickets_issued]:
        assert secret_value not in text


def test_status_respects_scoped_keys(start_worker, fake):
    worker = start_worker(**several(fake))
    accounts, _ = status_of(worker, key=SCOPED_KEY)
    assert set(accounts) == {"second", "corp-app"}
    reply = worker.request("GET", "/status?account=second", key=SCOPED_KEY)
    assert [a["account"] for a in reply.json["accounts"]] == ["second"]
    assert_error(worker.request("GET", f"/status?account={fake.appid}", key=SCOPED_KEY), 403,
                 "forbidden_account")
    assert_error(worker.request("GET", "/status", key=None), 401, "unauthorized")
    assert fake.calls == 0


@pytest.mark.parametrize("name", ["x" * 65, "x" * 600, "a b", "a:b", "shop%2Fx", "é"])
def test_account_names_are_checked_before_any_lookup(start_worker, fake, name):
    worker = start_worker(**several(fake))
    for param in ("account", "appid"):
        for key in (CLIENT_KEY, SCOPED_KEY):
            path = f"/token?{param}={urllib.parse.quote(name)}"
            body = assert_error(worker.request("GET", path, key=key), 400, "bad_request")
            assert f"?{param}=" in body["message"] and name not in body["message"]
    assert fake.calls == 0


def test_a_used_up_quota_pauses_refreshes_until_beijing_midnight(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0")
    fake.expires_in = 600  # inside the margin: every read would ask for a refresh
    token = worker.get_token().json["access_token"]
    fake.mode = "quota"
    body = assert_error(worker.refresh(), 502, "wechat_error")
    assert body["wechat_errcode"] == 45009
    assert fake.calls == 2  # 45009 is not retried

    midnight = round(next_beijing_midnight())
    accounts, _ = status_of(worker)
    assert accounts[fake.appid]["auto_refresh"] == f"paused_until:{midnight}"
    assert accounts[fake.appid]["last_error"]["wechat_errcode"] == 45009

    reply = worker.refresh()
    body = assert_error(reply, 429, "refresh_too_soon")
    assert body["reason"] == "quota_exhausted"
    assert abs(int(reply.headers["retry-after"]) - (midnight - time.time())) <= 5
    assert worker.run_cron()[-1]["outcome"] == "skipped"
    for _ in range(5):  # served from the cache; the background refresh is skipped
        assert_token_answer(worker.get_token(), fake, token)
    time.sleep(1)
    assert fake.calls == 2


def test_automatic_refreshes_back_off_while_wechat_keeps_failing(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="1")
    fake.expires_in = 600  # due at once
    token = worker.get_token().json["access_token"]
    fake.mode = "busy"
    time.sleep(1.1)
    # 12 s of readers (each isolate asks for a background refresh every few seconds) and cron
    # runs every half second.
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        assert_token_answer(worker.get_token(), fake, token)
        if int(time.monotonic() * 10) % 5 == 0:
            worker.fire_cron()
        time.sleep(0.1)
    time.sleep(1)
    # Each refresh is ATTEMPTS_PER_REFRESH calls; the time between refreshes doubles: waits of
    # 1, 2, 4 s after the 1st, 2nd, 3rd failure in a row, counted in whole seconds from the
    # failure (so up to 1 s less); the 5th would come 8 s after the 4th. A busy machine only
    # makes the gaps longer, so the test bounds them from below and counts the refreshes:
    # with a constant 1 s wait there would be about eleven, with none a storm.
    starts = fake.call_times[1::ATTEMPTS_PER_REFRESH]
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert 3 <= len(starts) <= 4, fake.call_times
    for gap, wait in zip(gaps, (1, 2, 4)):
        assert gap >= wait - 1, gaps
    assert gaps[-1] > gaps[0] and gaps[-1] >= 1.5, f"the waits grew: {gaps}"


def test_credential_errors_stop_automatic_retries_until_the_configuration_changes(
        start_worker, fake, tmp_path):
    state = str(tmp_path / "state")
    worker = start_worker(persist_dir=state, WECHAT_APPSECRET="fake-secret-wrong-0123456",
                          MIN_REFRESH_INTERVAL_SECS="1")
    body = assert_error(worker.get_token(), 502, "wechat_error")
    assert body["wechat_errcode"] == 40125
    assert "until the configuration changes" in body["message"]
    time.sleep(1.1)
    assert worker.run_cron()[-1]["outcome"] == "skipped"
    accounts, _ = status_of(worker)
    assert accounts[fake.appid]["auto_refresh"] == "blocked_until_config_changes"
    assert fake.calls == 1

    fixed = start_worker(persist_dir=state, MIN_REFRESH_INTERVAL_SECS="1")
    worker.stop()
    assert fixed.run_cron()[-1]["outcome"] == "refreshed"
    assert fake.calls == 2
    accounts, _ = status_of(fixed)
    assert accounts[fake.appid]["auto_refresh"] == "on"
    assert accounts[fake.appid]["token"] is not None


class TestIpWhitelistFamily:
    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers):
        return class_workers(MIN_REFRESH_INTERVAL_SECS="0")

    @pytest.mark.parametrize("mode, errcode", [
        ("ip_not_whitelisted", 40164), ("ip_not_registered", 61004), ("admin_confirm", 89503),
        ("ip_waiting", 89501), ("ip_blocked_hour", 89507),
    ])
    def test_the_error_and_status_name_the_ip_and_both_fixes(self, worker, fake, mode, errcode):
        fake.mode = mode
        body = assert_error(worker.get_token(), 502, "wechat_error")
        assert body["wechat_errcode"] == errcode
        assert fake.calls == 1
        for message in (body["message"], status_of(worker)[0][fake.appid]["last_error"]["message"]):
            assert FAKE_EGRESS_IP in message
            assert "whitelist" in message and "WECHAT_API_BASE" in message


class TestRequestLimits:
    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers):
        return class_workers()

    def test_bodies_over_8_kib_are_413(self, worker, fake):
        body = json.dumps({"stale_token": "x" * 9000})
        assert_error(worker.request("POST", "/token/refresh", body=body), 413, "payload_too_large")
        assert fake.calls == 0

    @pytest.mark.parametrize("path", ["/token/refresh", "/cgi-bin/stable_token"])
    def test_non_json_bodies_are_415(self, worker, fake, path):
        reply = worker.request("POST", path, body='{"stale_token":"x"}',
                               headers={"Content-Type": "text/plain"})
        assert_error(reply, 415, "unsupported_media_type")
        assert fake.calls == 0

    def test_an_empty_body_needs_no_content_type(self, worker):
        worker.get_token()
        reply = worker.request("POST", "/token/refresh", headers={"Content-Type": "text/plain"})
        # Accepted as a request for a new token, which the interval then refuses (not a 415).
        body = assert_error(reply, 429, "refresh_too_soon")
        assert body["reason"] == "min_interval"

    @pytest.mark.parametrize("path", [
        "/healthz", "/token", "/status", "/", "/ticket?type=jsapi",
        "/jssdk/signature?url=https%3A%2F%2Fshop.example%2F"])
    def test_head_is_answered_like_get_without_a_body(self, worker, path):
        get = worker.request("GET", path)
        head = worker.request("HEAD", path)
        assert head.status == get.status == 200
        assert head.text == ""
        assert head.headers["content-type"] == get.headers["content-type"]

    def test_no_cors_headers_unless_configured(self, worker):
        reply = worker.request("GET", "/token", headers={"Origin": "https://app.example"})
        assert not any(h.startswith("access-control-") for h in reply.headers)
        assert worker.request("OPTIONS", "/token", key=None,
                              headers={"Origin": "https://app.example"}).status == 405


def test_cors_for_listed_origins_only(start_worker):
    worker = start_worker(CORS_ALLOW_ORIGINS="https://app.example, https://admin.example/")
    allowed = {"Origin": "https://admin.example"}
    # Only the signature route, which never returns a raw token or ticket, answers browsers.
    path = "/jssdk/signature?url=https%3A%2F%2Fadmin.example%2F"
    reply = worker.request("GET", path, headers=allowed)
    assert reply.status == 200, reply.text
    assert reply.headers["access-control-allow-origin"] == "https://admin.example"
    assert "Origin" in reply.headers["vary"]
    assert worker.request("GET", path, key=None, headers=allowed).headers[
        "access-control-allow-origin"] == "https://admin.example"
    preflight = worker.request("OPTIONS", "/jssdk/signature", key=None, headers=allowed)
    assert preflight.status == 204
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    other = worker.request("GET", path, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    token = worker.request("GET", "/token", headers=allowed)
    assert not any(h.startswith("access-control-") for h in token.headers)


def test_cors_for_every_origin_and_gateway_prefixes_of_ones_own(start_worker, fake):
    worker = start_worker(CORS_ALLOW_ORIGINS="*", GATEWAY_PATH_PREFIXES="/wxa/, /sns/")
    origin = {"Origin": "https://any.example"}
    path = "/jssdk/signature?url=https%3A%2F%2Fany.example%2F"
    reply = worker.request("GET", path, headers=origin)
    assert reply.status == 200, reply.text
    assert reply.headers["access-control-allow-origin"] == "https://any.example"
    assert worker.request("OPTIONS", "/jssdk/signature", key=None, headers=origin).status == 204
    token = worker.request("GET", "/token", headers=origin)
    assert not any(h.startswith("access-control-") for h in token.headers), "never a token"
    # Only the listed prefixes go through; /cgi-bin/ is not one of them now.
    refused = worker.request("GET", "/gateway/cgi-bin/user/info?openid=o1")
    assert_error(refused, 404, "not_found")
    assert fake.api_requests == []
    passed = worker.request("GET", "/gateway/wxa/unknown_api")
    assert passed.json.get("errcode") == 404, "reached WeChat's (the fake's) own answer"


def test_an_account_named_twice_is_refused(start_worker, fake):
    worker = start_worker(**several(fake))
    for query in ("account=second&account=shop", "account=second&account=second"):
        assert_error(worker.request("GET", f"/token?{query}"), 400, "bad_request")
    assert fake.calls == 0


@pytest.mark.parametrize("variable, value", [
    ("CRON_BATCH", "0"), ("CRON_BATCH", "1001"), ("STABLE_FORCE_SPACING_SECS", "3601"),
    ("ALERT_AFTER_SECS", "86401"), ("ALERT_REPEAT_SECS", "59"), ("ALERT_REPEAT_SECS", "604801"),
    ("KV_MAX_AGE_SECS", "0"), ("KV_MAX_AGE_SECS", "7201"), ("EXPLICIT_REFRESH_DAILY_LIMIT", "10000001"),
])
def test_settings_out_of_range_are_named(start_worker, fake, variable, value):
    extra = {"ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook"} if variable.startswith("ALERT") \
        else {}
    worker = start_worker(**{variable: value, **extra})
    body = assert_error(worker.get_token(), 500, "config_error")
    assert variable in body["message"]
    assert fake.calls == 0


def test_wechat_out_of_reach_is_502_upstream_unreachable_after_its_retries(start_worker, fake):
    from harness import free_port
    closed = free_port()  # nothing listens there
    worker = start_worker(WECHAT_API_BASE=f"http://127.0.0.1:{closed}",
                          WECOM_API_BASE=f"http://127.0.0.1:{closed}")
    body = assert_error(worker.get_token(), 502, "upstream_unreachable")
    assert "reach" in body["message"].lower()
    attempts = [e for e in worker.events("upstream_call") if e["credential"] == "token"]
    assert wait_for(lambda: len([e for e in worker.events("upstream_call")
                                 if e["credential"] == "token"]) == ATTEMPTS_PER_REFRESH, 5), \
        attempts
