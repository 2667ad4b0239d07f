"""One correct token for everyone: the edge cache heals a lost write, a forced stable_token
refresh retires the old token everywhere at once, a lost answer or an interrupted refresh is
treated as a replaced token, and a changed configuration is never served an old record.

The fake WeChat behaves like WeChat here: a replaced classic token keeps working for
`grace_secs` only, and a forced stable_token call kills the previous token at once."""

import json
import threading
import time

from harness import CLIENT_KEY, wait_for
from setups import CORP, SECOND, STABLE, several
from test_api import assert_error, assert_token_answer
from test_compat import stable_token, wechat_get


def edge_token(worker, account=None):
    """The token a reader gets once this isolate's one-second memory has passed: from KV
    unless KV has nothing fresh."""
    time.sleep(1.1)
    path = "/token" if account is None else f"/token?account={account}"
    reply = worker.request("GET", path)
    assert reply.status == 200, reply.text
    return reply.json["access_token"]


def test_a_failed_kv_write_is_retried_by_the_object_until_the_edge_has_the_new_token(
        start_worker, fake):
    # Every KV key's 2nd and 3rd writes fail: the refresh's write and the first retry.
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0", TEST_FAIL_KV_WRITES="2-3")
    first = worker.get_token().json["access_token"]
    second = assert_token_answer(worker.refresh(first), fake)["access_token"]
    assert second != first and fake.current_token == second
    assert wait_for(lambda: edge_token(worker) == second, timeout=20), \
        "the edge kept serving the replaced token"
    failures = worker.events("kv_write_failed")
    assert len(failures) >= 2 and {f["credential"] for f in failures} == {"token"}, failures
    assert worker.events("alarm"), "the retry came from the object's alarm"
    assert fake.calls == 2


def test_an_edge_entry_is_trusted_only_for_kv_max_age_even_if_every_write_fails(
        start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0", TEST_FAIL_KV_WRITES="2-",
                          KV_MAX_AGE_SECS="3")
    first = worker.get_token().json["access_token"]
    second = worker.refresh(first).json["access_token"]
    started = time.monotonic()
    assert wait_for(lambda: edge_token(worker) == second, timeout=20)
    # Without the bound, KV would serve the first token for its entry's life (a minute or
    # more); 3 s of freshness plus a busy machine's delays stay well under that.
    assert time.monotonic() - started < 12, "healed by the entry's bounded freshness"
    assert fake.calls == 2


def test_kv_writes_to_one_key_are_spaced_by_a_second(start_worker, fake):
    # Cloudflare's KV refuses a second write to a key within a second; the local one does not,
    # so the test variable makes it.
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0", TEST_KV_ONE_WRITE_PER_SEC="1")
    first = worker.get_token().json["access_token"]
    second = worker.refresh(first).json["access_token"]
    third = worker.refresh(second).json["access_token"]
    assert len({first, second, third}) == 3
    assert edge_token(worker) == third
    assert worker.events("kv_write_failed") == []


class TestForcedStableRefresh:
    """A forced stable_token refresh kills the previous token at once (WeChat's rule)."""

    def test_a_forced_call_that_fails_is_not_sent_again(self, start_worker, fake):
        # A forced call that reached WeChat may have killed the token already: sent once.
        worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0"))
        old = worker.request("GET", "/token?account=shop").json["access_token"]
        before = fake.calls_for(STABLE[0])
        fake.modes[STABLE[0]] = "http_500"
        reply = worker.request("POST", "/token/refresh?account=shop",
                               body=json.dumps({"stale_token": old}))
        assert reply.status == 502, reply.text
        assert fake.calls_for(STABLE[0]) == before + 1, "not retried"
        assert fake.requests[-1]["force_refresh"] is True

    def test_the_old_token_is_refused_everywhere_at_once(self, start_worker, fake):
        worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0"))
        old = worker.request("GET", "/token?account=shop").json["access_token"]
        reply = worker.request("POST", "/token/refresh?account=shop",
                               body=json.dumps({"stale_token": old}))
        new = assert_token_answer(reply, fake, appid=STABLE[0], account="shop")["access_token"]
        assert fake.requests[-1]["force_refresh"] is True
        assert not fake.is_valid(old) and fake.is_valid(new)
        # No grace for the killed token: getticket refuses it, as WeChat would.
        refused = wechat_get(worker, "/cgi-bin/ticket/getticket", access_token=old, type="jsapi")
        assert refused["errcode"] == 40001, refused
        # The edge serves the new token: KV was written before the refresh answered.
        assert edge_token(worker, "shop") == new

    def test_compat_force_refresh_is_a_normal_fetch(self, start_worker, fake):
        worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0"))
        current = worker.request("GET", "/token?account=shop").json["access_token"]
        calls = fake.calls
        answer = stable_token(worker, grant_type="client_credential", appid=STABLE[0],
                              secret=CLIENT_KEY,
                              force_refresh=True)
        assert answer["access_token"] == current
        assert fake.calls == calls, "no call to WeChat, forced or not"
        assert fake.is_valid(current)


def test_a_lost_answer_caps_the_token_and_the_next_refresh_replaces_it(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="1")
    first = worker.get_token().json["access_token"]
    fake.mode = "lost"  # WeChat issues a token, the answer comes after the worker gave up
    time.sleep(1.1)
    assert_error(worker.refresh(first), 504, "upstream_timeout")
    lost = fake.current_token
    assert lost != first
    # The stored token dies 300 s after that call: it is served no longer than that.
    status = worker.request("GET", f"/status?account={fake.appid}").json["accounts"][0]
    assert status["token"]["fingerprint"] is not None
    assert status["token"]["expires_in"] <= 300
    edge = worker.request("GET", "/token").json
    assert edge["access_token"] == first and edge["expires_in"] <= 300
    # ... and it is due, so the next automatic refresh (the cron, or the background refresh
    # that read asked for, whichever comes first) replaces it.
    fake.mode = "ok"
    time.sleep(1.1)
    worker.run_cron()
    assert wait_for(lambda: fake.calls == 3)
    assert edge_token(worker) == fake.current_token != lost
    assert fake.calls == 3


def test_a_lost_wecom_answer_caps_the_token_until_wecom_hands_the_same_one_back(
        start_worker, fake):
    worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="1"))
    corp = "/token?account=corp-app"
    first = worker.request("GET", corp).json["access_token"]
    fake.modes[CORP[0]] = "lost"  # WeCom answers, after the worker gave up
    time.sleep(2.1)  # past the interval, counted in whole seconds
    lost = worker.request("POST", f"/token/refresh?account=corp-app",
                          body=json.dumps({"stale_token": first}))
    assert_error(lost, 504, "upstream_timeout")
    # Whether WeCom issued a new token is unknown: the held one is served 300 s at most.
    status = worker.request("GET", "/status?account=corp-app").json["accounts"][0]
    assert status["token"]["expires_in"] <= 300
    assert worker.request("GET", corp).json["expires_in"] <= 300
    # WeCom hands the same token back (it was still valid): its own expiry is back, not the
    # cap, and nothing more is asked of WeCom (the cap's end would otherwise leave a token
    # the server thinks dead, and a call every interval to get it back again).
    fake.modes[CORP[0]] = "ok"
    time.sleep(2.1)
    worker.run_cron(lines=4)
    assert wait_for(lambda: fake.calls_for(CORP[0]) == 3, 10)
    status = worker.request("GET", "/status?account=corp-app").json["accounts"][0]
    assert status["token"]["expires_in"] > 7000, status["token"]
    assert edge_token(worker, "corp-app") == first
    time.sleep(3)
    assert fake.calls_for(CORP[0]) == 3


def test_no_retry_starts_without_a_second_of_budget(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0", UPSTREAM_TIMEOUT_MS="3000")
    fake.mode = "busy"
    # After one busy answer, 950 ms are left: no second attempt fits (a slow machine only
    # leaves less), and the first still has 950 ms of slack before its own timeout.
    fake.latency_ms = 2050
    body = assert_error(worker.get_token(), 502, "wechat_error")
    assert body["wechat_errcode"] == -1, "the real failure, not a timeout of a doomed retry"
    assert fake.calls == 1


def test_a_refresh_cut_off_by_a_restart_is_reconciled_when_the_object_loads(
        start_worker, fake, tmp_path):
    state = str(tmp_path / "state")
    worker = start_worker(persist_dir=state, MIN_REFRESH_INTERVAL_SECS="1")
    first = worker.get_token().json["access_token"]
    fake.mode, fake.lost_ms = "lost", 20000
    time.sleep(1.1)
    caller = threading.Thread(target=lambda: _ignore_errors(worker.refresh, first))
    caller.start()
    assert wait_for(lambda: fake.current_token != first, timeout=10)
    worker.stop()  # the object dies mid-call: WeChat issued a token nobody received
    caller.join()
    fake.mode = "ok"
    restarted = start_worker(persist_dir=state, MIN_REFRESH_INTERVAL_SECS="1")
    restarted.run_cron()  # the cron wakes the object; it notices the interrupted call
    assert wait_for(lambda: fake.calls == 3, timeout=15), "the object refreshed on its own"
    assert restarted.events("refresh_interrupted")
    assert edge_token(restarted) == fake.current_token


def _ignore_errors(call, *args):
    try:
        call(*args, timeout=30)
    except OSError:
        pass


def test_a_changed_appid_under_the_same_id_is_never_served_the_old_token(
        start_worker, fake, tmp_path):
    state = str(tmp_path / "state")
    only = lambda appid, secret: {  # noqa: E731
        "WECHAT_APPID": "", "WECHAT_APPSECRET": "",
        "WECHAT_ACCOUNTS": json.dumps([{"id": "main", "appid": appid, "secret": secret}]),
    }
    before = start_worker(persist_dir=state, **only(*SECOND))
    old = before.request("GET", "/token?account=main").json["access_token"]
    before.stop()
    after = start_worker(persist_dir=state, **only(fake.appid, fake.secret))
    reply = after.request("GET", "/token?account=main")
    body = assert_token_answer(reply, fake, appid=fake.appid, account="main")
    assert body["access_token"] != old
    assert body["access_token"] == fake.current_token_for(fake.appid)
    assert fake.calls_for(fake.appid) == 1


def test_two_ids_fetching_one_appid_are_a_configuration_error(start_worker, fake):
    twice = json.dumps([{"id": "a", "appid": SECOND[0], "secret": SECOND[1]},
                        {"id": "b", "appid": SECOND[0], "secret": SECOND[1]}])
    worker = start_worker(WECHAT_ACCOUNTS=twice)
    body = assert_error(worker.request("GET", "/token?account=a"), 500, "config_error")
    assert "WECHAT_ACCOUNTS" in body["message"] and "invalidate" in body["message"]
    assert SECOND[1] not in json.dumps(body)
    assert fake.calls == 0


class TestTokenIndex:
    def test_getticket_knows_a_token_by_the_index_the_object_writes(self, start_worker, fake):
        # Several accounts, so no fallback to a single object: the index alone recognizes it.
        worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0"))
        fake.expires_in = 50  # shorter than KV's 60 s minimum entry life
        token = worker.request("GET", "/token?account=second").json["access_token"]
        answer = wechat_get(worker, "/cgi-bin/ticket/getticket", access_token=token, type="jsapi")
        assert answer["errcode"] == 0, answer
        assert answer["ticket"].startswith(f"TICKET-{SECOND[0]}-jsapi")

    def test_a_replaced_classic_token_is_still_accepted_during_the_grace(self, start_worker,
                                                                         fake):
        worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0"))
        old = worker.request("GET", "/token?account=second").json["access_token"]
        worker.request("POST", "/token/refresh?account=second",
                       body=json.dumps({"stale_token": old}))
        answer = wechat_get(worker, "/cgi-bin/ticket/getticket", access_token=old, type="jsapi")
        assert answer["errcode"] == 0, "inside WeChat's five minutes the old token still works"
        assert fake.calls_for(SECOND[0]) == 2
        # The pass-through forwards it too, as the SDK sent it: WeChat still takes it.
        passed = worker.request("GET", f"/cgi-bin/user/info?access_token={old}&openid=o1",
                                key=None)
        assert passed.json.get("openid") == "o1", passed.text
        assert fake.api_requests[-1]["token_appid"] == SECOND[0]

    def test_a_replaced_token_is_refused_once_its_window_ends(self, start_worker, fake):
        # The window is WeChat's five minutes, never past the old token's own expiry: with a
        # 20 s token, that expiry ends it, and the pass-through stops forwarding it. (The
        # five-minute arm is the same bound, unit-tested in policy::token.)
        fake.expires_in = 20
        worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0",
                                        REFRESH_MARGIN_SECS="5"))
        old = worker.request("GET", "/token?account=second").json["access_token"]
        issued = time.monotonic()
        new = worker.request("POST", "/token/refresh?account=second",
                             body=json.dumps({"stale_token": old})).json["access_token"]
        assert new != old
        inside = worker.request("GET", f"/cgi-bin/user/info?access_token={old}&openid=o1",
                                key=None)
        assert inside.json.get("openid") == "o1", inside.text
        sent = len(fake.api_requests)
        time.sleep(max(0.0, issued + 21.5 - time.monotonic()))
        after = worker.request("GET", f"/cgi-bin/user/info?access_token={old}&openid=o2",
                               key=None)
        assert after.json["errcode"] == 40001, after.text
        assert len(fake.api_requests) == sent, "the old token was not forwarded"

    def test_a_token_the_index_never_got_is_checked_with_the_only_accounts_object(
            self, start_worker, fake):
        # Every KV write fails: the token index never has it. One account, none registered
        # at runtime: a token can only be its, and its object says whether it is current.
        worker = start_worker(TEST_FAIL_KV_WRITES="1-")
        token = worker.get_token().json["access_token"]
        answer = wechat_get(worker, "/cgi-bin/ticket/getticket", access_token=token, type="jsapi")
        assert answer["errcode"] == 0, answer
        passed = worker.request("GET", f"/cgi-bin/user/info?access_token={token}&openid=o2",
                                key=None)
        assert passed.json.get("openid") == "o2", passed.text
        assert fake.api_requests[-1]["token_appid"] == fake.appid
        forged = worker.request("GET", "/cgi-bin/user/info?access_token=FAKE-forged&openid=o3",
                                key=None)
        assert forged.json["errcode"] == 40001 and len(fake.api_requests) == 1


def test_kv_keeps_an_entry_through_its_stale_window_at_a_real_max_age(start_worker, fake):
    """At KV_MAX_AGE_SECS=60 (where KV's own 60-second minimum does not hide it), a read past
    the entry's freshness, within its quarter, is answered from KV while the object is asked
    in the background; KV no longer drops the entry the moment its freshness ends."""
    # Only the first KV write lands: the object's rewrite fails, so the entry stays stale
    # through its window, and what readers ask of the object shows.
    worker = start_worker(KV_MAX_AGE_SECS="60", TEST_LOG_OBJECT_REQUESTS="1",
                          TEST_FAIL_KV_WRITES="2-")
    token = worker.get_token().json["access_token"]
    written = time.monotonic()
    time.sleep(63)  # past fresh_until (60 s after the write), inside the 15 s stale window
    def asked():
        """What readers asked of the account's object (not the object's own reports to the
        registry: each KV failure it counts changes its summary)."""
        return [e["op"] for e in worker.events("object_request") if e["object"] == "account"]

    before = len(asked())
    assert worker.get_token().json["access_token"] == token
    # The background ask is made after the answer: wait for it, then for any second one.
    assert wait_for(lambda: asked()[before:], 5)
    time.sleep(0.5)
    ops = asked()[before:]
    assert ops == ["token:background"], ops
    # Readers go on for 6 s: answered from KV, asking again at most once in five seconds.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        assert worker.get_token().json["access_token"] == token
        time.sleep(0.25)
    ops = asked()[before:]
    assert ops in (["token:background"], ["token:background"] * 2), ops
    # The window (a quarter of 60 s) ends: KV has dropped the entry, the object answers.
    time.sleep(max(0.0, written + 60 + 15 + 1.5 - time.monotonic()))
    seen = len(asked())
    assert worker.get_token().json["access_token"] == token
    assert wait_for(lambda: asked()[seen:], 5)
    ops = asked()[seen:]
    assert ops == ["token:read"], ops
    assert fake.calls == 1
