"""Limits that keep one client, one browser or one busy minute from hurting everyone: the
explicit-refresh budget, route scopes, CORS on the signature only, bounded bodies, one
background ask per isolate, stable tokens held until WeChat rotates them, and tickets whose
token refresh is refused."""

import http.client
import json
import time
from urllib.parse import quote

from harness import CLIENT_KEY, next_beijing_midnight, wait_for
from setups import STABLE, several
from test_api import assert_error, assert_token_answer
from test_compat import wechat_get


def status_entry(worker, account=None):
    """The account's live entry (by name, from its object): the default account if none."""
    account = account or worker.variables["WECHAT_APPID"]
    path = f"/status?account={account}"
    reply = worker.request("GET", path)
    assert reply.status == 200, reply.text
    return reply.json["accounts"][0]


def test_explicit_refreshes_have_a_daily_budget_and_automatic_ones_go_on(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0", EXPLICIT_REFRESH_DAILY_LIMIT="2",
                          TEST_NO_DUE_ALARMS="1")
    fake.expires_in = 600  # inside the margin, so the cron refreshes it
    token = worker.get_token().json["access_token"]
    token = worker.refresh(token).json["access_token"]  # naming the current token
    worker.refresh()  # no body
    assert fake.calls == 3
    for reply in (worker.refresh(), worker.refresh(fake.current_token)):
        body = assert_error(reply, 429, "refresh_too_soon")
        assert body["reason"] == "explicit_daily_limit"
        assert abs(int(reply.headers["retry-after"]) - (next_beijing_midnight() - time.time())) <= 5
    assert fake.calls == 3
    entry = status_entry(worker)
    assert entry["explicit_refreshes_today"] == 2 and entry["explicit_daily_limit"] == 2
    # An old stale token still gets the current one, and the cron still refreshes.
    assert_token_answer(worker.refresh(token), fake, fake.current_token)
    assert worker.run_cron()[-1]["outcome"] == "refreshed"
    assert fake.calls == 4


def test_the_default_explicit_budget_is_a_tenth_of_the_quota(start_worker, fake):
    worker = start_worker()
    entry = status_entry(worker)
    assert (entry["daily_quota"], entry["explicit_daily_limit"]) == (2000, 200)


SIGNER = "signer-key-0123456789abcdef"
TICKETS = "tickets-key-0123456789abcdef"


class TestRouteScopes:
    def worker(self, start_worker, fake, **extra):
        keys = f"{CLIENT_KEY},{SIGNER}@{fake.appid}:signature,{TICKETS}:ticket+status"
        return start_worker(CLIENT_KEYS=keys, **extra)

    def test_a_signature_key_signs_and_reads_nothing_else(self, start_worker, fake):
        worker = self.worker(start_worker, fake)
        page = quote("https://shop.example/", safe="")
        assert worker.request("GET", f"/jssdk/signature?url={page}", key=SIGNER).status == 200
        for method, path in [("GET", "/token"), ("POST", "/token/refresh"),
                             ("GET", "/ticket?type=jsapi"), ("GET", "/status")]:
            assert_error(worker.request(method, path, key=SIGNER), 403, "forbidden_route")
        answer = wechat_get(worker, "/cgi-bin/token", grant_type="client_credential",
                            appid=fake.appid, secret=SIGNER)
        assert answer["errcode"] == 48001 and "access_token" not in answer

    def test_a_route_only_scope_covers_every_account(self, start_worker, fake):
        worker = self.worker(start_worker, fake, **{
            k: v for k, v in several(fake).items() if k != "CLIENT_KEYS"})
        for account in (fake.appid, "second"):
            reply = worker.request("GET", f"/ticket?type=jsapi&account={account}", key=TICKETS)
            assert reply.status == 200 and reply.json["account"] == account, reply.text
            assert_error(worker.request("GET", f"/token?account={account}", key=TICKETS), 403,
                         "forbidden_route")
        listed = {e["account"] for e in
                  worker.request("GET", "/status", key=TICKETS).json["accounts"]}
        assert listed == {fake.appid, "second", "corp-app", "shop"}

    def test_a_scope_naming_no_configured_account_is_a_configuration_error(self, start_worker,
                                                                          fake):
        worker = start_worker(CLIENT_KEYS=f"{CLIENT_KEY},{SIGNER}@shopp:signature")
        body = assert_error(worker.get_token(), 500, "config_error")
        assert "CLIENT_KEYS" in body["message"] and "entry 2" in body["message"]
        assert SIGNER not in json.dumps(body)
        assert fake.calls == 0

    def test_cors_headers_only_on_the_signature(self, start_worker, fake):
        worker = self.worker(start_worker, fake, CORS_ALLOW_ORIGINS="https://shop.example")
        origin = {"Origin": "https://shop.example"}
        token = worker.request("GET", "/token", headers=origin)
        assert token.status == 200
        assert not any(h.startswith("access-control-") for h in token.headers)
        assert worker.request("OPTIONS", "/token", key=None, headers=origin).status == 405
        page = quote("https://shop.example/", safe="")
        signed = worker.request("GET", f"/jssdk/signature?url={page}", key=SIGNER, headers=origin)
        assert signed.headers["access-control-allow-origin"] == "https://shop.example"
        preflight = worker.request("OPTIONS", "/jssdk/signature", key=None, headers=origin)
        assert preflight.status == 204


def post_chunked(worker, path, chunks, key=None):
    """A POST with a chunked body and no Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request("POST", path, body=iter(chunks), headers=headers, encode_chunked=True)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


class TestBodies:
    def test_a_caller_without_a_key_is_refused_before_its_body_is_read(self, start_worker,
                                                                       fake):
        worker = start_worker()
        chunks = [b"x" * 4096] * 16
        status, body = post_chunked(worker, "/token/refresh", chunks)
        assert (status, body["error"]) == (401, "unauthorized")
        reply = worker.request("POST", "/token/refresh", key=None, body="x" * 20000)
        assert_error(reply, 401, "unauthorized")

    def test_a_chunked_body_is_cut_off_past_8_kib(self, start_worker, fake):
        worker = start_worker()
        status, body = post_chunked(worker, "/token/refresh", [b" " * 4096] * 3, key=CLIENT_KEY)
        assert (status, body["error"]) == (413, "payload_too_large")
        status, body = post_chunked(worker, "/cgi-bin/stable_token", [b" " * 4096] * 3)
        assert (status, body["error"]) == (413, "payload_too_large")
        assert fake.calls == 0


def test_readers_in_the_margin_ask_the_object_once_not_once_each(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="60")
    fake.expires_in = 600  # due from the start; the object may not refresh again for 60 s
    token = worker.get_token().json["access_token"]
    for _ in range(30):
        assert worker.get_token().json["access_token"] == token
    def asks():
        return [d for d in worker.events("refresh_decision") if d["trigger"] == "background"]
    # Asked after the answers: wait for the first ask, then give a second one time to show.
    assert wait_for(asks, 5), "no background ask"
    time.sleep(0.5)
    assert len(asks()) <= 2, f"{len(asks)} background asks for 30 reads"
    assert fake.calls == 1


def test_a_stable_token_handed_back_unchanged_is_held_until_wechat_rotates_it(start_worker,
                                                                             fake):
    worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="1", TEST_NO_DUE_ALARMS="1"))
    fake.expires_in = 800  # due (margin 900), but stable_token hands it back until 300 s left
    token = worker.request("GET", "/token?account=shop").json["access_token"]
    time.sleep(1.1)
    by_account = lambda events: {e["account"]: e for e in events}  # noqa: E731
    assert by_account(worker.run_cron(lines=4))["shop"]["outcome"] == "refreshed"
    assert fake.calls_for(STABLE[0]) == 2 and fake.current_token_for(STABLE[0]) == token
    for _ in range(2):
        time.sleep(1.1)
        assert by_account(worker.run_cron(lines=4))["shop"]["outcome"] == "skipped"
    assert fake.calls_for(STABLE[0]) == 2


def test_a_ticket_whose_token_refresh_is_refused_keeps_its_limits(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="30")
    token = worker.get_token().json["access_token"]
    fake.revoked.add(token)  # getticket says 40001; the token was refreshed moments ago
    body = assert_error(worker.request("GET", "/ticket?type=jsapi"), 502, "wechat_error")
    assert body["wechat_errcode"] == 40001
    reply = worker.request("GET", "/ticket?type=jsapi")
    assert_error(reply, 503, "no_valid_token")
    assert 1 <= int(reply.headers["retry-after"]) <= 30
    assert fake.ticket_calls_for(fake.appid, "jsapi") == 1
    assert fake.calls == 1
    entry = status_entry(worker)
    assert entry["last_error"]["credential"] == "jsapi"


def test_the_ticket_paths_own_token_refresh_is_outside_the_explicit_budget(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0", EXPLICIT_REFRESH_DAILY_LIMIT="0")
    token = worker.get_token().json["access_token"]
    assert_error(worker.refresh(token), 429, "refresh_too_soon")  # no explicit refresh today
    fake.revoked.add(token)  # getticket says 40001: the server replaces the token itself
    reply = worker.request("GET", "/ticket?type=jsapi")
    assert reply.status == 200, reply.text
    assert fake.calls == 2 and fake.ticket_calls_for(fake.appid, "jsapi") == 2
    assert status_entry(worker)["explicit_refreshes_today"] == 0


def test_mini_programs_have_no_js_sdk_tickets(start_worker, fake):
    worker = start_worker(**several(fake))
    for kind in ("jsapi", "wx_card"):
        assert_error(worker.request("GET", f"/ticket?account=shop&type={kind}"), 400,
                     "bad_request")
    page = quote("https://shop.example/", safe="")
    assert_error(worker.request("GET", f"/jssdk/signature?account=shop&url={page}"), 400,
                 "bad_request")
    assert fake.calls == 0
