"""The gateway's boundaries in every spelling, and heals no caller can turn into a weapon: no
`%` in a path, the rules matched however a path is spelt, a heal within its own budget and
never more than one per interval, redirects never followed, a relay's error page in WeChat's
shape, and answers a browser will neither sniff nor run. The fake routes paths as a decoding
relay delivers them (and, as the worst case, case-insensitively and without a trailing `/`),
and records which account's token each call carried."""

import http.server
import json
import threading

import pytest

from harness import CLIENT_KEY, wait_for
from setups import SECOND, STABLE, several
from test_api import assert_error
from test_gateway import raw_get


@pytest.fixture(scope="module")
def worker(fake):
    from conftest import WorkerFactory
    factory = WorkerFactory(fake)
    yield factory(**several(fake, MIN_REFRESH_INTERVAL_SECS="0",
                            WECHAT_EGRESS_KEY="egress-key-0123456789abcdef"))
    factory.close()


def token_of(worker, account):
    reply = worker.request("GET", f"/token?account={account}")
    assert reply.status == 200, reply.text
    return reply.json["access_token"]


class TestOneCanonicalPath:
    @pytest.mark.parametrize("path", [
        "/cgi-bin/user/inf%6F",
        "/cgi-bin/user%2Finfo",
        "/cgi-bin/%75ser/info",
    ])
    def test_a_percent_anywhere_in_a_path_is_refused_before_anything_is_sent(
            self, worker, fake, path):
        token = token_of(worker, "second")
        auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
        status, text = raw_get(worker, f"/gateway{path}?account=second&openid=o1", auth)
        assert status == 400 and json.loads(text)["error"] == "bad_request", text
        assert "%" in json.loads(text)["message"]
        status, text = raw_get(worker, f"{path}?access_token={token}&openid=o1")
        assert status == 200 and json.loads(text)["errcode"] == 40097, text
        assert fake.api_requests == []

    @pytest.mark.parametrize("path", ["/sns/userinfo/", "/sns/USERINFO", "/sns/UserInfo/"])
    def test_every_spelling_of_a_users_oauth_call_carries_the_users_token_only(
            self, worker, fake, path):
        token_of(worker, "shop")
        warmed = fake.calls_for(STABLE[0])
        reply = worker.request(
            "GET", f"/gateway{path}?account=shop&access_token=USER-forged&openid=o")
        assert reply.status == 200 and reply.json["errcode"] == 40001, reply.text
        [call] = fake.api_requests
        assert call["token_appid"] is None, "the account's token went upstream"
        assert call["query"]["access_token"] == "***" and "appid" not in call["query"]
        assert fake.calls_for(STABLE[0]) == warmed, "a user's refused token healed nothing"


class TestHealing:
    def test_a_rejected_token_heals_once_per_interval_and_the_pass_through_says_why(
            self, start_worker, fake):
        # MIN_REFRESH_INTERVAL_SECS at its default, 60 s.
        worker = start_worker(**several(fake))
        token = token_of(worker, "second")
        fake.revoked.add(token)
        healed = worker.request("GET", "/gateway/cgi-bin/user/info?account=second&openid=o1")
        assert healed.status == 200 and healed.json["openid"] == "o1", healed.text
        assert fake.calls_for(SECOND[0]) == 2
        fresh = token_of(worker, "second")
        assert fresh != token
        [first, second] = fake.api_requests
        assert first["token_appid"] == second["token_appid"] == SECOND[0]
        assert "account" not in first["query"] and "appid" not in first["query"]
        # WeChat rejects the new token too, within the interval: no second call.
        fake.revoked.add(fresh)
        keyed = worker.request("GET", "/gateway/cgi-bin/user/info?account=second&openid=o2")
        assert_error(keyed, 429, "refresh_too_soon")
        assert keyed.json["reason"] == "min_interval"
        passed = worker.request("GET", f"/cgi-bin/user/info?access_token={fresh}&openid=o3",
                                key=None)
        assert passed.status == 200 and passed.json["errcode"] == 40001, \
            "the pass-through answers WeChat's own rejection, not 45009"
        assert fake.calls_for(SECOND[0]) == 2, "one heal per interval"
        status = worker.request("GET", "/status?account=second").json["accounts"][0]
        assert status["gateway_heals_today"] == 1
        assert status["gateway_heal_daily_limit"] == 200
        # The pass-through call's line may reach the log after its answer.
        assert wait_for(lambda: any(e.get("heal_refused") == "refresh_too_soon"
                                    for e in worker.events("gateway_call")), 10)

    def test_gateway_heals_have_a_daily_budget_of_their_own(self, start_worker, fake):
        worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0",
                                        GATEWAY_HEAL_DAILY_LIMIT="1"))
        token = token_of(worker, "second")
        fake.revoked.add(token)
        path = "/gateway/cgi-bin/user/info?account=second&openid=o1"
        assert worker.request("GET", path).status == 200
        fake.revoked.add(token_of(worker, "second"))
        refused = worker.request("GET", path)
        assert_error(refused, 429, "refresh_too_soon")
        assert refused.json["reason"] == "gateway_heal_daily_limit"
        assert fake.calls_for(SECOND[0]) == 2
        # The clients' own explicit refreshes are another budget.
        stale = token_of(worker, "second")
        reply = worker.request("POST", "/token/refresh?account=second",
                               body=json.dumps({"stale_token": stale}))
        assert reply.status == 200 and reply.json["access_token"] != stale, reply.text

    def test_a_stable_token_heal_past_wechats_forced_limit_is_a_normal_call(
            self, start_worker, fake):
        worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0",
                                        STABLE_FORCE_DAILY_LIMIT="0"))
        token = token_of(worker, "shop")
        fake.revoked.add(token)
        reply = worker.request("GET", "/gateway/cgi-bin/user/info?account=shop&openid=o1")
        # stable_token's normal mode hands back the token it holds: WeChat's own answer.
        assert reply.status == 200 and reply.json["errcode"] == 40001, reply.text
        stable_calls = [r for r in fake.requests if r["endpoint"] == "stable_token"]
        assert len(stable_calls) == 2, stable_calls
        assert not any(r.get("force_refresh") for r in stable_calls), "never forced"


class CatchAll(http.server.BaseHTTPRequestHandler):
    hits: list = []

    def do_GET(self):  # noqa: N802
        CatchAll.hits.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_POST = do_GET

    def log_message(self, *args):
        pass


class TestUpstreamAnswers:
    def test_a_redirect_is_never_followed(self, worker, fake):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CatchAll)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            CatchAll.hits = []
            fake.redirect_to = f"http://127.0.0.1:{server.server_address[1]}/steal"
            keyed = worker.request("GET", "/gateway/cgi-bin/redirect?account=second")
            assert_error(keyed, 502, "upstream_redirect")
            token = token_of(worker, "second")
            passed = worker.request("GET", f"/cgi-bin/redirect?access_token={token}", key=None)
            assert passed.status == 200 and passed.json["errcode"] == -1, passed.text
            assert len(fake.api_requests) == 2
            assert CatchAll.hits == [], "the egress key went to another host"
            # Each call's log line says what the edge refused, in both ways in.
            # Log lines may arrive after their answers, and out of order.
            def lines():
                return sorted((e["mode"], e["edge_error"]) for e in worker.events("gateway_call")
                              if e["path"] == "/cgi-bin/redirect")
            assert wait_for(lambda: len(lines()) >= 2, 10), lines()
            assert lines() == [("keyed", "upstream_redirect"),
                               ("pass_through", "upstream_redirect")]
        finally:
            server.shutdown()
            server.server_close()

    def test_a_call_whose_connection_drops_is_502_unreachable_and_minus_1_to_sdks(
            self, worker, fake):
        keyed = worker.request("GET", "/gateway/cgi-bin/hangup?account=second")
        assert_error(keyed, 502, "upstream_unreachable")
        token = token_of(worker, "second")
        passed = worker.request("GET", f"/cgi-bin/hangup?access_token={token}", key=None)
        assert passed.status == 200 and passed.json["errcode"] == -1, passed.text
        assert token not in passed.text
        assert len(fake.api_requests) == 2, "a gateway call is sent once"

    def test_a_relays_error_page_reaches_sdks_in_wechats_shape(self, worker, fake):
        keyed = worker.request("GET", "/gateway/cgi-bin/relay_down?account=second")
        assert_error(keyed, 502, "upstream_http_error")
        token = token_of(worker, "second")
        passed = worker.request("GET", f"/cgi-bin/relay_down?access_token={token}", key=None)
        assert passed.status == 200 and passed.json["errcode"] == -1, passed.text
        assert "502" in passed.json["errmsg"] and "<html>" not in passed.text

    def test_answers_passed_on_are_neither_sniffed_nor_run(self, worker, fake):
        reply = worker.request("GET", "/gateway/cgi-bin/user/info?account=second&openid=o1")
        assert reply.status == 200
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["content-security-policy"] == "sandbox"
        assert wait_for(lambda: worker.events("gateway_call"), 10)
