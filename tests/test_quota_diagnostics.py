"""Quota and diagnostics: an API's daily quota as WeChat counts it (`GET /quota`), clearing an
account's quotas with its monthly limit (`POST /admin/accounts/<id>/clear-quota`), and a failed
call's record by the rid every WeChat error now carries (`GET /diagnostics/rid`), its secrets
masked. The refusals come first."""

import json

import pytest

from fake_openapi import beijing_month
from harness import CLIENT_KEY, wait_for
from setups import CORP, SECOND, STABLE, SCOPED_KEY, several
from test_alerts import alert_vars, receiver  # noqa: F401 (a fixture)
from test_api import assert_error
from test_platform import AUTHORIZER, authorize, component_vars, push_ticket

ADMIN_KEY = "admin-key-for-quota-0123456789abcdef"
STATUS_KEY = "status-only-key-0123456789"
QUOTA_KEY = "quota-only-key-0123456789"
SEND = "/cgi-bin/message/custom/send"


@pytest.fixture(scope="class")
def worker(class_workers, fake):
    keys = f"{CLIENT_KEY},{SCOPED_KEY}@second+corp-app,{STATUS_KEY}:status,{QUOTA_KEY}:quota"
    return class_workers(**several(fake, CLIENT_KEYS=keys, ADMIN_KEYS=ADMIN_KEY,
                                   MIN_REFRESH_INTERVAL_SECS="0"))


def status_of(worker, account):
    return worker.request("GET", f"/status?account={account}").json["accounts"][0]


class TestQuotaAndDiagnostics:
    def test_refusals_reach_no_api(self, worker, fake):
        quota = f"/quota?path={SEND}"
        rid = "/diagnostics/rid?rid=6620d1f0-1a2b"
        for path in (quota, rid):
            assert_error(worker.request("GET", path, key=None), 401, "unauthorized")
            assert_error(worker.request("GET", path, key=STATUS_KEY), 403, "forbidden_route")
            assert_error(worker.request("GET", f"{path}&account=shop", key=SCOPED_KEY), 403,
                         "forbidden_account")
            assert_error(worker.request("GET", f"{path}&account=corp-app"), 400, "bad_request")
            assert_error(worker.request("POST", path, body="{}"), 405, "method_not_allowed")
        # /quota takes a client key only; an admin key is not one.
        assert_error(worker.request("GET", quota, key=ADMIN_KEY), 401, "unauthorized")
        assert_error(worker.request("GET", rid, key=QUOTA_KEY), 403, "forbidden_route")
        for bad in ("", "?path=", "?path=cgi-bin/x", "?path=https://api.weixin.qq.com/x",
                    "?path=/cgi-bin/x%3Fa%3D1"):
            assert_error(worker.request("GET", f"/quota{bad}"), 400, "bad_request")
        for bad in ("", "?rid=", "?rid=a%20b"):
            assert_error(worker.request("GET", f"/diagnostics/rid{bad}"), 400, "bad_request")
        assert (fake.openapi.quota_calls, fake.openapi.rid_calls) == (0, 0)

    def test_the_quota_is_wechats_count_for_the_accounts_own_token_cached_a_minute(
            self, worker, fake):
        for n in range(2):
            message = {"touser": "o1", "msgtype": "text", "text": {"content": f"hi {n}"}}
            sent = worker.request("POST", f"/gateway{SEND}", body=json.dumps(message))
            assert sent.status == 200 and sent.json["errcode"] == 0, sent.text
        reply = worker.request("GET", f"/quota?path={SEND}", key=QUOTA_KEY)
        assert reply.status == 200, reply.text
        answer = reply.json
        assert (answer["account"], answer["path"]) == (fake.appid, SEND)
        # The fake counts the calls it served to the token's owner: this account's token went.
        assert (answer["daily_limit"], answer["used"], answer["remain"]) == (500000, 2, 499998)
        assert answer["rate_limit"] == {"call_count": 100, "refresh_second": 60}
        assert isinstance(answer["fetched_at"], int)
        again = worker.request("GET", f"/quota?path={SEND}")
        assert again.json == answer and fake.openapi.quota_calls == 1, "cached for 60 s"
        other = worker.request("GET", f"/quota?account=second&path={SEND}")
        assert other.status == 200 and other.json["used"] == 0, other.text
        assert fake.openapi.quota_calls == 2

    def test_wechats_refusals_are_answered_with_their_meaning_and_rid(self, worker, fake):
        unknown = assert_error(worker.request("GET", "/quota?path=/cgi-bin/no/such/api"), 502,
                               "wechat_error")
        assert unknown["wechat_errcode"] == 76021 and "76021" in unknown["message"]
        assert unknown["wechat_rid"] and unknown["wechat_rid"] in unknown["wechat_errmsg"]
        sns = assert_error(worker.request("GET", "/quota?path=/sns/userinfo"), 502,
                           "wechat_error")
        assert sns["wechat_errcode"] == 76022 and "/sns/" in sns["message"]

    def test_a_failed_calls_rid_leads_to_its_record_with_the_token_masked(self, worker, fake):
        seen = len(worker.events("gateway_call"))
        bad = worker.request("POST", f"/gateway{SEND}", body="not json")
        assert bad.status == 200 and bad.json["errcode"] == 47001, bad.text
        rid = bad.json["errmsg"].rsplit("rid: ", 1)[1]
        # Its log line (which may come after the answer) carries the rid.
        def logged():
            return [e for e in worker.events("gateway_call")[seen:] if e.get("wechat_rid") == rid]
        assert wait_for(logged)
        assert logged()[0]["errcode"] == 47001 and logged()[0]["path"] == SEND
        for key in (CLIENT_KEY, ADMIN_KEY):  # a client key with the route, or an admin key
            reply = worker.request("GET", f"/diagnostics/rid?rid={rid}", key=key)
            assert reply.status == 200, reply.text
            record = reply.json["request"]
            assert (reply.json["account"], reply.json["rid"]) == (fake.appid, rid)
            assert record["request_url"] == "access_token=***"
            assert record["request_body"] == "not json"
            assert json.loads(record["response_body"])["errcode"] == 47001
            assert record["client_ip"] == "203.0.113.7" and record["invoke_time"] > 0
        token = worker.request("GET", "/token").json["access_token"]
        assert token not in reply.text
        # WeChat keeps a rid for its own account only.
        other = assert_error(worker.request("GET", f"/diagnostics/rid?account=second&rid={rid}"),
                             502, "wechat_error")
        assert other["wechat_errcode"] == 76003
        missing = assert_error(worker.request("GET", "/diagnostics/rid?rid=00000000-0000"), 502,
                               "wechat_error")
        assert missing["wechat_errcode"] == 76001

    def test_a_clear_lifts_wechats_pause_and_the_servers(self, worker, fake):
        token = worker.request("GET", "/token?account=second").json["access_token"]
        fake.modes[SECOND[0]] = "quota"
        refresh = json.dumps({"stale_token": token})
        paused = assert_error(worker.request("POST", "/token/refresh?account=second",
                                             body=refresh), 502, "wechat_error")
        assert paused["wechat_errcode"] == 45009 and paused["wechat_rid"], paused
        # The call's log line carries it too (the log may come after the answer).
        assert wait_for(lambda: paused["wechat_rid"] in [
            e["wechat_rid"] for e in worker.events("upstream_call") if e["account"] == "second"])
        status = status_of(worker, "second")
        assert status["auto_refresh"].startswith("paused_until")
        assert status["clears_left_this_month"] == 10
        assert_error(worker.request("POST", "/admin/accounts/second/clear-quota"), 401,
                     "unauthorized")
        assert_error(worker.request("GET", "/admin/accounts/second/clear-quota", key=ADMIN_KEY),
                     405, "method_not_allowed")
        cleared = worker.request("POST", "/admin/accounts/second/clear-quota", key=ADMIN_KEY)
        assert cleared.status == 200, cleared.text
        assert cleared.json == {"account": "second", "cleared": True, "clears_left_this_month": 9}
        assert fake.openapi.clear_calls == [{"appid": SECOND[0], "component": False}]
        assert fake.modes[SECOND[0]] == "ok", "WeChat cleared the quota"
        status = status_of(worker, "second")
        assert (status["auto_refresh"], status["clears_left_this_month"]) == ("on", 9)
        renewed = worker.request("POST", "/token/refresh?account=second", body=refresh)
        assert renewed.status == 200 and renewed.json["access_token"] != token, renewed.text
        assert_error(worker.request("POST", "/admin/accounts/corp-app/clear-quota",
                                    key=ADMIN_KEY), 400, "bad_request")
        assert len(fake.openapi.clear_calls) == 1, "WeCom has no clear: WeChat not called"

    def test_the_eleventh_clear_of_a_month_is_refused(self, worker, fake):
        # Nine clears made in WeChat's console this month: the server's first is the tenth.
        fake.openapi.clears[(STABLE[0], beijing_month(__import__("time").time()))] = 9
        first = worker.request("POST", "/admin/accounts/shop/clear-quota", key=ADMIN_KEY)
        assert first.status == 200 and first.json["clears_left_this_month"] == 9, first.text
        refused = worker.request("POST", "/admin/accounts/shop/clear-quota", key=ADMIN_KEY)
        assert_error(refused, 429, "clear_quota_monthly_limit")
        assert int(refused.headers["retry-after"]) > 0
        assert len(fake.openapi.clear_calls) == 2, "WeChat said 48006"
        assert status_of(worker, "shop")["clears_left_this_month"] == 0
        again = worker.request("POST", "/admin/accounts/shop/clear-quota", key=ADMIN_KEY)
        assert_error(again, 429, "clear_quota_monthly_limit")
        assert len(fake.openapi.clear_calls) == 2, "the 11th is refused without calling WeChat"
        # WeChat's 48006 carried a rid: its record shows the clear's body, the secret masked.
        def refusals():
            return [e for e in worker.events("quota_clear") if e["account"] == "shop"
                    and e["outcome"] == "clear_quota_monthly_limit" and e["wechat_rid"]]
        assert wait_for(refusals), worker.events("quota_clear")
        line = refusals()[0]
        reply = worker.request("GET", f"/diagnostics/rid?account=shop&rid={line['wechat_rid']}",
                               key=ADMIN_KEY)
        assert reply.status == 200, reply.text
        body = json.loads(reply.json["request"]["request_body"])
        assert body == {"appid": STABLE[0], "appsecret": "***"}
        assert STABLE[1] not in reply.text
        assert json.loads(reply.json["request"]["response_body"])["errcode"] == 48006


def test_a_watched_quota_running_low_alerts_and_recovers_after_a_clear(start_worker, fake,
                                                                        receiver):
    fake.openapi.limits[SEND] = 4
    worker = start_worker(**several(fake, ADMIN_KEYS=ADMIN_KEY, **alert_vars(receiver),
                                    QUOTA_WATCH_PATHS=f"{SEND}, /cgi-bin/user/get",
                                    QUOTA_LOW_PERCENT="50", TEST_QUOTA_WATCH_SECS="2"))
    assert worker.request("GET", "/token").status == 200

    def watched(used):
        quotas = status_of(worker, fake.appid).get("watched_quotas", {})
        return quotas.get(SEND, {}).get("used") == used and quotas
    # The object asks on its alarm, with its own token: the fake counts its calls to the owner.
    quotas = wait_for(lambda: watched(0), 10) and watched(0)
    assert quotas[SEND]["daily_limit"] == 4 and quotas[SEND]["remain"] == 4, quotas
    assert quotas["/cgi-bin/user/get"]["daily_limit"] == 500000
    for n in range(3):
        message = {"touser": "o1", "msgtype": "text", "text": {"content": f"hi {n}"}}
        assert worker.request("POST", f"/gateway{SEND}", body=json.dumps(message)).status == 200
    # 1 of 4 left is under 50 %: the alert starts, once.
    bodies = receiver.wait(1)
    assert receiver.states() == [("quota_low", "started")], receiver.states()
    assert bodies[0]["account"] == fake.appid and bodies[0]["errcode"] is None
    assert "clear-quota" in bodies[0]["text"]
    assert wait_for(lambda: watched(3), 10)
    assert "quota_low" in status_of(worker, fake.appid)["alerts"]
    metrics = worker.request("GET", "/metrics").text
    assert (f'wechat_token_edge_watched_quota_used{{account="{fake.appid}",'
            f'kind="official_account",api="classic",path="{SEND}"}} 3') in metrics
    # WeChat clears the quota: the next round sees it and the alert recovers.
    assert worker.request("POST", f"/admin/accounts/{fake.appid}/clear-quota",
                          key=ADMIN_KEY).status == 200
    receiver.wait(2)
    assert receiver.states() == [("quota_low", "started"), ("quota_low", "recovered")]
    assert watched(0)
    assert status_of(worker, "corp-app").get("watched_quotas") in (None, {}), "WeCom: not watched"


def test_an_authorizer_asks_with_its_own_token_and_is_cleared_by_the_platform(start_worker,
                                                                                fake):
    worker = start_worker(**component_vars(fake, ADMIN_KEYS=ADMIN_KEY, QUOTA_WATCH_PATHS=SEND,
                                           TEST_QUOTA_WATCH_SECS="2"))
    worker.fake_platform = fake.platform
    push_ticket(worker)
    authorize(worker)
    message = {"touser": "o1", "msgtype": "text", "text": {"content": "hi"}}
    sent = worker.request("POST", f"/gateway{SEND}?account={AUTHORIZER}", body=json.dumps(message))
    assert sent.status == 200 and sent.json["errcode"] == 0, sent.text
    quota = worker.request("GET", f"/quota?account={AUTHORIZER}&path={SEND}")
    assert quota.status == 200 and quota.json["used"] == 1, quota.text

    # Its object watches the quota with its own token too; the component's does not.
    def watched(account):
        entry = worker.request("GET", f"/status?account={account}").json["accounts"][0]
        return entry.get("watched_quotas", {}).get(SEND, {}).get("used")
    assert wait_for(lambda: watched(AUTHORIZER) == 1, 10), watched(AUTHORIZER)
    assert watched(fake.platform.appid) is None
    # An authorizer has no appsecret of its own: the platform clears for it with its own.
    cleared = worker.request("POST", f"/admin/accounts/{AUTHORIZER}/clear-quota", key=ADMIN_KEY)
    assert cleared.status == 200, cleared.text
    own = worker.request("POST", f"/admin/accounts/{fake.platform.appid}/clear-quota",
                         key=ADMIN_KEY)
    assert own.status == 200, own.text
    assert fake.openapi.clear_calls == [{"appid": AUTHORIZER, "component": True},
                                        {"appid": fake.platform.appid, "component": True}]
    assert fake.openapi.used(AUTHORIZER, SEND) == 0, "WeChat cleared the authorizer's count"


def test_a_refresh_that_wechat_refuses_in_the_background_logs_its_rid(start_worker, fake):
    worker = start_worker()
    fake.mode = "ip_not_whitelisted"
    line = worker.run_cron()[0]
    assert line["outcome"] == "wechat_error", line
    # The rid WeChat appended to its errmsg (the call's own line has it), to look it up by.
    assert wait_for(lambda: [e for e in worker.events("upstream_call") if e["wechat_rid"]], 10)
    rids = [e["wechat_rid"] for e in worker.events("upstream_call")]
    assert line["wechat_rid"] and line["wechat_rid"] == rids[-1], (line, rids)
