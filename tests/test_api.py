"""The HTTP contract: routes, auth, answer shapes, passive refresh, single flight."""

import json
import time

import pytest

from harness import CLIENT_KEY, burst


def assert_token_answer(reply, fake, token=None, appid=None, account=None):
    """A 200 token answer; `appid` defaults to the fake's main app, `account` to the appid."""
    assert reply.status == 200, reply.text
    body = reply.json
    assert set(body) == {"access_token", "expires_in", "expires_at", "appid", "account"}
    assert body["appid"] == (appid or fake.appid)
    assert body["account"] == (account or body["appid"])
    assert body["access_token"] in fake.all_issued
    if token is not None:
        assert body["access_token"] == token
    assert 0 < body["expires_in"] <= fake.expires_in
    assert abs(body["expires_at"] - (time.time() + body["expires_in"])) <= 2
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["content-type"].startswith("application/json")
    return body


def assert_error(reply, status, code):
    assert reply.status == status, reply.text
    body = reply.json
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


class TestWithDefaults:
    """Default policy (900 s margin, 60 s minimum interval); one worker for the whole class."""

    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers):
        return class_workers()

    def test_healthz_needs_no_key_and_reveals_nothing(self, worker, fake):
        reply = worker.request("GET", "/healthz", key=None)
        assert reply.status == 200
        assert reply.json == {"ok": True}
        assert fake.calls == 0

    def test_unknown_route_is_404(self, worker):
        assert_error(worker.request("GET", "/nope"), 404, "not_found")
        assert_error(worker.request("GET", "/token/extra"), 404, "not_found")

    @pytest.mark.parametrize("method, path, allow", [
        ("POST", "/token", "GET, HEAD"),
        ("DELETE", "/token", "GET, HEAD"),
        ("GET", "/token/refresh", "POST"),
        ("PUT", "/healthz", "GET, HEAD"),
    ])
    def test_wrong_method_is_405(self, worker, method, path, allow):
        reply = worker.request(method, path, body="" if method in ("POST", "PUT") else None)
        assert_error(reply, 405, "method_not_allowed")
        assert reply.headers["allow"] == allow

    @pytest.mark.parametrize("headers", [
        {},
        {"Authorization": "Bearer wrong-key-0123456789abcdef"},
        {"Authorization": f"Basic {CLIENT_KEY}"},
        {"Authorization": CLIENT_KEY},
        {"Authorization": f"Bearer {CLIENT_KEY}x"},
    ])
    def test_missing_or_wrong_key_is_401(self, worker, fake, headers):
        for path, method in [("/token", "GET"), ("/token/refresh", "POST")]:
            reply = worker.request(method, path, key=None, headers=headers)
            assert_error(reply, 401, "unauthorized")
            assert reply.headers["www-authenticate"] == "Bearer"
        assert fake.calls == 0

    def test_cold_burst_makes_one_upstream_call(self, worker, fake):
        fake.latency_ms = 300  # keep the call open while the burst arrives
        replies = burst(200, worker.get_token)
        tokens = {assert_token_answer(r, fake)["access_token"] for r in replies}
        assert len(tokens) == 1
        assert fake.calls == 1
        assert fake.max_in_flight == 1

    def test_warm_reads_are_served_without_upstream_calls(self, worker, fake):
        token = assert_token_answer(worker.get_token(), fake)["access_token"]
        for _ in range(20):
            assert_token_answer(worker.get_token(), fake, token)
        assert fake.calls == 0

    def test_passive_refresh_with_an_old_token_returns_the_current_one(self, worker, fake):
        current = worker.get_token().json["access_token"]
        reply = worker.refresh("FAKE-some-older-token")
        assert_token_answer(reply, fake, current)
        assert fake.calls == 0

    def test_forced_refresh_inside_the_interval_is_429(self, worker, fake):
        # The class's worker fetched its token moments ago (or this read does, when the test
        # runs alone): either way inside the 60 s interval.
        current = worker.get_token().json["access_token"]
        before = fake.calls
        for reply in (worker.refresh(), worker.refresh(current)):
            assert_error(reply, 429, "refresh_too_soon")
            assert 1 <= int(reply.headers["retry-after"]) <= 60
        assert fake.calls == before

    @pytest.mark.parametrize("body", ["{", "[]", '"token"', '{"stale_token": 5}', '{"stale_token": ""}'])
    def test_malformed_refresh_body_is_400(self, worker, fake, body):
        reply = worker.request("POST", "/token/refresh", body=body,
                               headers={"Content-Type": "application/json"})
        assert_error(reply, 400, "bad_request")
        assert fake.calls == 0


class TestPassiveRefresh:
    """No minimum interval, so forced and passive refreshes reach WeChat."""

    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers):
        return class_workers(MIN_REFRESH_INTERVAL_SECS="0")

    def test_concurrent_passive_refreshes_of_one_stale_token_make_one_call(self, worker, fake):
        stale = worker.get_token().json["access_token"]
        fake.reset()
        fake.latency_ms = 300
        body = json.dumps({"stale_token": stale})
        replies = burst(50, lambda: worker.request("POST", "/token/refresh", body=body))
        tokens = {assert_token_answer(r, fake)["access_token"] for r in replies}
        assert fake.calls == 1
        assert tokens == {fake.current_token}
        assert stale not in tokens
        # Readers see the new token at once.
        assert_token_answer(worker.get_token(), fake, fake.current_token)

    def test_refresh_without_a_body_forces_one(self, worker, fake):
        before = worker.get_token().json["access_token"]
        reply = worker.request("POST", "/token/refresh")
        after = assert_token_answer(reply, fake)["access_token"]
        assert after != before
        assert fake.calls == 1
        assert_token_answer(worker.get_token(), fake, after)

    def test_the_upstream_request_carries_the_configured_credentials(self, worker, fake):
        worker.refresh()
        assert fake.requests == [{
            "endpoint": "token",
            "grant_type": "client_credential", "appid": fake.appid, "secret": fake.secret,
        }]

