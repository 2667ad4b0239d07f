"""JS-SDK tickets and the page signature."""

import hashlib
import json
import re
import time
from urllib.parse import quote

import pytest

from harness import ATTEMPTS_PER_REFRESH, burst, wait_for
from setups import CORP, several
from test_api import assert_error


def ticket(worker, kind="jsapi", account=None):
    path = f"/ticket?type={kind}" + (f"&account={account}" if account else "")
    return worker.request("GET", path)


def assert_ticket_answer(reply, kind="jsapi", account=None, fake=None):
    assert reply.status == 200, reply.text
    body = reply.json
    assert set(body) == {"ticket", "expires_in", "expires_at", "type", "account"}
    assert body["type"] == kind
    if account:
        assert body["account"] == account
    assert body["ticket"].startswith("TICKET-")
    assert 0 < body["expires_in"] <= 7200
    assert abs(body["expires_at"] - (time.time() + body["expires_in"])) <= 2
    assert reply.headers["cache-control"] == "no-store"
    return body


class TestTickets:
    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers, fake):
        # The cron and reads alone: no alarm refreshes a due ticket first.
        return class_workers(**several(fake, MIN_REFRESH_INTERVAL_SECS="1",
                                       TEST_NO_DUE_ALARMS="1"))

    def test_a_cold_burst_fetches_one_ticket_with_one_token(self, worker, fake):
        fake.latency_ms = 200
        replies = burst(50, lambda: ticket(worker))
        tickets = {assert_ticket_answer(r, account=fake.appid)["ticket"] for r in replies}
        assert len(tickets) == 1
        assert fake.ticket_calls_for(fake.appid, "jsapi") == 1
        assert fake.calls_for(fake.appid) == 1

    def test_tickets_are_cached_per_type(self, worker, fake):
        jsapi = assert_ticket_answer(ticket(worker))["ticket"]
        card = assert_ticket_answer(ticket(worker, "wx_card"), "wx_card")["ticket"]
        assert card != jsapi and "-wx_card-" in card
        for _ in range(5):
            assert ticket(worker).json["ticket"] == jsapi
            assert ticket(worker, "wx_card").json["ticket"] == card
        assert fake.ticket_calls_for(fake.appid, "jsapi") == 0
        assert fake.ticket_calls_for(fake.appid, "wx_card") == 1

    def test_wecom_jsapi_ticket_comes_from_wecom(self, worker, fake):
        body = assert_ticket_answer(ticket(worker, account="corp-app"), account="corp-app")
        assert body["ticket"].startswith(f"TICKET-{CORP[0]}-jsapi")
        assert fake.calls_for(CORP[0]) == 1
        assert_error(ticket(worker, "wx_card", account="corp-app"), 400, "bad_request")

    def test_a_wecom_applications_agent_config_ticket(self, worker, fake):
        body = assert_ticket_answer(ticket(worker, "agent_config", account="corp-app"),
                                    kind="agent_config", account="corp-app")
        assert body["ticket"].startswith(f"TICKET-{CORP[0]}-agent_config")
        assert fake.ticket_calls[(CORP[0], "agent_config")] == 1
        # Kept like any ticket, apart from the corporation's jsapi one.
        assert ticket(worker, "agent_config", account="corp-app").json["ticket"] == body["ticket"]
        assert ticket(worker, "jsapi", account="corp-app").json["ticket"] != body["ticket"]
        assert fake.ticket_calls[(CORP[0], "agent_config")] == 1
        # And signed for wx.agentConfig, the JS-SDK's way (computed independently).
        page = "https://corp.example.com/app?x=1#top"
        reply = worker.request("GET", "/jssdk/signature?account=corp-app&type=agent_config&url="
                               + quote(page, safe=""))
        assert reply.status == 200, reply.text
        signed = reply.json
        text = (f"jsapi_ticket={body['ticket']}&noncestr={signed['nonceStr']}"
                f"&timestamp={signed['timestamp']}&url=https://corp.example.com/app?x=1")
        assert signed["signature"] == hashlib.sha1(text.encode()).hexdigest()
        assert_error(ticket(worker, "agent_config"), 400, "bad_request")  # not WeCom

    @pytest.mark.parametrize("query, status, code", [
        ("", 400, "bad_request"),
        ("?type=", 400, "bad_request"),
        ("?type=card", 400, "bad_request"),
        ("?type=jsapi&type2=x&account=nope", 404, "unknown_account"),
    ])
    def test_bad_ticket_requests(self, worker, fake, query, status, code):
        assert_error(worker.request("GET", "/ticket" + query), status, code)
        assert fake.calls == 0

    def test_cron_refreshes_a_ticket_inside_the_margin(self, worker, fake):
        fake.ticket_expires_in = 600  # inside the 900 s margin
        # Ask for a ticket the account has not used yet, so it is fetched (at 600 s) now.
        due = assert_ticket_answer(ticket(worker, "wx_card", account="second"), "wx_card")["ticket"]
        fake.ticket_expires_in = 7200
        time.sleep(1.1)
        events = {e["account"]: e for e in worker.run_cron(lines=4)}
        assert events["second"]["tickets"]["wx_card"]["outcome"] == "refreshed"
        fresh = ticket(worker, "wx_card", account="second").json
        assert fresh["ticket"] != due and fresh["expires_in"] > 7000


@pytest.mark.parametrize("errcode", [40001, 42001, 40014])
def test_a_ticket_rejected_token_is_refreshed_and_the_ticket_fetched_again(start_worker, fake,
                                                                           errcode):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="1")
    old = worker.get_token().json["access_token"]
    fake.rejection_errcode = errcode
    fake.revoked.add(old)  # WeChat no longer accepts it: getticket answers `errcode`
    time.sleep(1.1)
    body = assert_ticket_answer(ticket(worker))
    assert fake.ticket_calls_for(fake.appid, "jsapi") == 2
    assert fake.calls_for(fake.appid) == 2
    new = worker.get_token().json["access_token"]
    assert new != old and new == fake.current_token_for(fake.appid)
    assert ticket(worker).json["ticket"] == body["ticket"]


def test_a_ticket_failure_is_reported_and_retried_after_the_interval(start_worker, fake):
    # Wide enough that "right after the failure" cannot already be past it (whole seconds).
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="3")
    fake.ticket_mode = "busy"
    body = assert_error(ticket(worker), 502, "wechat_error")
    assert body["wechat_errcode"] == -1
    reply = ticket(worker)
    assert_error(reply, 503, "no_valid_token")
    fake.ticket_mode = "ok"
    time.sleep(3.1)
    assert_ticket_answer(ticket(worker))
    assert fake.ticket_calls_for(fake.appid, "jsapi") == ATTEMPTS_PER_REFRESH + 1


class TestSignature:
    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers):
        return class_workers()

    def test_signature_follows_the_js_sdk_algorithm(self, worker, fake):
        page = "https://shop.example.com/item?id=42&from=timeline#reviews"
        reply = worker.request("GET", "/jssdk/signature?url=" + quote(page, safe=""))
        assert reply.status == 200, reply.text
        body = reply.json
        assert set(body) == {"appId", "timestamp", "nonceStr", "signature", "url"}
        assert body["appId"] == fake.appid
        assert body["url"] == "https://shop.example.com/item?id=42&from=timeline"
        assert abs(body["timestamp"] - time.time()) <= 5
        assert re.fullmatch(r"[A-Za-z0-9]{16}", body["nonceStr"])
        jsapi_ticket = ticket(worker).json["ticket"]
        # Computed independently: sha1 of the four fields, sorted, joined with '&'.
        text = (f"jsapi_ticket={jsapi_ticket}&noncestr={body['nonceStr']}"
                f"&timestamp={body['timestamp']}&url={body['url']}")
        assert body["signature"] == hashlib.sha1(text.encode()).hexdigest()

    def test_nonces_differ(self, worker):
        path = "/jssdk/signature?url=" + quote("https://a.example/", safe="")
        nonces = {worker.request("GET", path).json["nonceStr"] for _ in range(5)}
        assert len(nonces) == 5

    @pytest.mark.parametrize("url", [None, "", "ftp://a.example/", "a.example/page", "javascript:x"])
    def test_a_missing_or_non_http_url_is_400(self, worker, url):
        path = "/jssdk/signature" + ("" if url is None else "?url=" + quote(url, safe=""))
        assert_error(worker.request("GET", path), 400, "bad_request")

    def test_signature_needs_a_key(self, worker):
        path = "/jssdk/signature?url=" + quote("https://a.example/", safe="")
        assert_error(worker.request("GET", path, key=None), 401, "unauthorized")
