"""The platform's pushes in WeChat's order, removals that finish, and what the objects record
when they have nothing to call with (issue 18): a late withdrawal never erases a newer
authorization, a retried withdrawal finishes what a failed one left, an erased authorizer's
exchange still under way writes nothing back, a code is never sent twice (not even across a
restart mid-exchange), a ticket pushed again changes nothing, conflicts by appid, fast
registrations, imports of authorizers that existed before, and missing grants recorded like
any failure."""

import json
import time


import wechat_push
from harness import wait_for
from test_api import assert_error
from test_platform import platform_worker  # noqa: F401 (the fixture)
from test_platform import AUTHORIZER, authorize, push, push_ticket

ADMIN_KEY = "admin-key-for-the-platform-tests-0123456789"


def message(fake, info_type, authorizer=AUTHORIZER, code="", created_at=None):
    return wechat_push.authorization_message(fake.platform.appid, info_type, authorizer, code,
                                             created_at)


def accepted(reply):
    assert (reply.status, reply.text) == (200, "success"), reply.text


class TestOrder:
    def test_a_late_withdrawal_never_erases_a_newer_authorization(self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        now = int(time.time())
        token = authorize(worker)
        # WeChat's retry of a withdrawal from before this authorization arrives late.
        accepted(push(worker, message(fake, "unauthorized", created_at=now - 60)))
        reply = worker.request("GET", f"/token?account={AUTHORIZER}")
        assert reply.status == 200 and reply.json["access_token"] == token, reply.text
        assert wait_for(lambda: worker.events("platform_push_out_of_order"), 10)
        # A withdrawal of now does take it away, and an older authorization replayed after it
        # brings nothing back (its code is never sent).
        accepted(push(worker, message(fake, "unauthorized", created_at=now + 1)))
        assert_error(worker.request("GET", f"/token?account={AUTHORIZER}"), 404,
                     "unknown_account")
        replay = fake.platform.new_authorization(AUTHORIZER)
        accepted(push(worker, message(fake, "authorized", code=replay, created_at=now)))
        time.sleep(1)
        assert_error(worker.request("GET", f"/token?account={AUTHORIZER}"), 404,
                     "unknown_account")
        assert fake.platform.calls["api_query_auth"] == 1
        # A new authorization after the withdrawal is one.
        fresh = fake.platform.new_authorization(AUTHORIZER)
        accepted(push(worker, message(fake, "authorized", code=fresh, created_at=now + 2)))
        assert wait_for(lambda: worker.request("GET", f"/token?account={AUTHORIZER}").status
                        == 200, 15)

    def test_wechats_retry_of_an_authorization_sends_its_code_once(self, platform_worker,
                                                                     fake):
        worker = platform_worker()
        push_ticket(worker)
        code = fake.platform.new_authorization(AUTHORIZER)
        sealed = message(fake, "authorized", code=code)
        accepted(push(worker, sealed))
        assert wait_for(lambda: worker.request("GET", f"/token?account={AUTHORIZER}").status
                        == 200, 15)
        accepted(push(worker, sealed))  # WeChat did not hear `success` in time: the same push
        time.sleep(1)
        assert fake.platform.calls["api_query_auth"] == 1
        assert worker.request("GET", f"/token?account={AUTHORIZER}").status == 200

    def test_a_ticket_pushed_again_changes_nothing(self, platform_worker, fake):
        worker = platform_worker()
        ticket = fake.platform.new_ticket()
        sealed = wechat_push.ticket_message(fake.platform.appid, ticket)
        accepted(push(worker, sealed))
        component = fake.platform.appid

        def received_at():
            status = worker.request("GET", f"/status?account={component}").json
            return status["accounts"][0]["verify_ticket"]["received_at"]
        first = received_at()
        time.sleep(1.2)
        accepted(push(worker, sealed))
        assert received_at() == first, "a replay stretched the ticket's twelve hours"


class TestRemoval:
    def test_a_withdrawal_that_failed_half_way_is_finished_by_wechats_retry(
            self, platform_worker, fake):
        worker = platform_worker(TEST_FAIL_ERASES="1")
        push_ticket(worker)
        authorize(worker)
        withdrawal = message(fake, "unauthorized")
        failed = push(worker, withdrawal)
        assert failed.status == 500 and failed.text != "success", failed.text
        assert not worker.events("account_erased")
        accepted(push(worker, withdrawal))  # WeChat pushes again
        assert wait_for(lambda: worker.events("account_erased"), 10), \
            "the retry found no registration and left the object's state behind"
        assert_error(worker.request("GET", f"/token?account={AUTHORIZER}"), 404,
                     "unknown_account")

    def test_a_withdrawal_never_touches_an_account_of_the_environment(self, platform_worker,
                                                                      fake):
        accounts = json.dumps([{"id": AUTHORIZER, "kind": "official_account",
                                "appid": AUTHORIZER, "secret": "fake-secret-env-0123456789"}])
        fake.add_app(AUTHORIZER, "fake-secret-env-0123456789")
        worker = platform_worker(WECHAT_ACCOUNTS=accounts)
        token = worker.request("GET", f"/token?account={AUTHORIZER}").json["access_token"]
        accepted(push(worker, message(fake, "unauthorized")))
        reply = worker.request("GET", f"/token?account={AUTHORIZER}")
        assert reply.status == 200 and reply.json["access_token"] == token, reply.text
        assert not worker.events("account_erased")
        assert fake.calls_for(AUTHORIZER) == 1

    def test_an_exchange_under_way_when_the_authorizer_is_erased_writes_nothing_back(
            self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        first = authorize(worker)
        now = int(time.time())
        fake.platform.latency_ms = 1500  # within UPSTREAM_TIMEOUT_MS
        slow = fake.platform.new_authorization(AUTHORIZER)
        accepted(push(worker, message(fake, "updateauthorized", code=slow, created_at=now)))
        accepted(push(worker, message(fake, "unauthorized", created_at=now)))
        # The slow exchange ends after the erase; then the account authorizes again.
        assert wait_for(lambda: fake.platform.calls["api_query_auth"] == 2, 10)
        time.sleep(2.5)
        resurrected = fake.current_token_for(AUTHORIZER)
        assert resurrected != first
        again = fake.platform.new_authorization(AUTHORIZER)
        accepted(push(worker, message(fake, "authorized", code=again, created_at=now + 1)))
        reply = worker.request("GET", f"/token?account={AUTHORIZER}")
        assert reply.status == 200, reply.text
        assert reply.json["access_token"] != resurrected, \
            "a token from before the withdrawal was served: erased state came back"
        assert reply.json["access_token"] == fake.current_token_for(AUTHORIZER)

    def test_a_code_is_never_sent_twice_across_a_restart_mid_exchange(
            self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        fake.platform.latency_ms = 4000
        code = fake.platform.new_authorization(AUTHORIZER)
        accepted(push(worker, message(fake, "authorized", code=code)))
        assert wait_for(lambda: fake.platform.calls["api_query_auth"] == 1, 10)
        worker.restart()  # the object is evicted mid-exchange
        fake.platform.latency_ms = 0
        time.sleep(6)
        worker.request("GET", f"/token?account={AUTHORIZER}")
        time.sleep(1)
        assert fake.platform.calls["api_query_auth"] == 1, "the code was sent again"


class TestRegistration:
    def test_an_authorizer_with_the_appid_of_another_account_is_a_conflict(
            self, platform_worker, fake):
        accounts = json.dumps([{"id": "shop", "kind": "mini_program", "appid": AUTHORIZER,
                                "secret": "fake-secret-shop-0123456789"}])
        fake.add_app(AUTHORIZER, "fake-secret-shop-0123456789")
        worker = platform_worker(WECHAT_ACCOUNTS=accounts)
        push_ticket(worker)
        code = fake.platform.new_authorization(AUTHORIZER)
        refused = push(worker, message(fake, "authorized", code=code))
        assert_error(refused, 409, "conflict")
        assert worker.request("GET", "/component/authorizers").json["authorizers"] == []
        reply = worker.request("GET", f"/token?appid={AUTHORIZER}")
        assert reply.status == 200 and reply.json["account"] == "shop", reply.text
        assert fake.platform.calls["api_query_auth"] == 0

    def test_a_fast_registration_registers_the_new_mini_program(self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        new_appid = "wxfastregistered01"
        code = fake.platform.new_authorization(new_appid)
        accepted(push(worker, wechat_push.fast_registration_message(
            fake.platform.appid, new_appid, code)))
        assert wait_for(lambda: worker.request("GET", f"/token?account={new_appid}").status
                        == 200, 15)
        failed = wechat_push.fast_registration_message(fake.platform.appid, "wxnotcreated0001",
                                                       "unused", status=89249)
        accepted(push(worker, failed))
        assert_error(worker.request("GET", "/token?account=wxnotcreated0001"), 404,
                     "unknown_account")

    def test_authorizers_from_before_the_deployment_are_imported_page_by_page(
            self, platform_worker, fake):
        worker = platform_worker(ADMIN_KEYS=ADMIN_KEY)
        push_ticket(worker)
        existing = ["wxexisting00000001", "wxexisting00000002", "wxexisting00000003"]
        for appid in existing:
            with fake.platform._lock:
                fake.platform._new_refresh_token(appid)
        path = "/admin/component/authorizers/sync"
        assert_error(worker.request("POST", path), 401, "unauthorized")
        first = worker.request("POST", f"{path}?count=2", key=ADMIN_KEY)
        assert first.status == 200, first.text
        assert first.json["imported"] == existing[:2] and first.json["next_offset"] == 2
        rest = worker.request("POST", f"{path}?offset=2&count=2", key=ADMIN_KEY)
        assert rest.json["imported"] == existing[2:] and rest.json["next_offset"] is None
        assert "refresh" not in first.text + rest.text
        for appid in existing:
            reply = worker.request("GET", f"/token?account={appid}")
            assert reply.status == 200 and reply.json["access_token"] == \
                fake.current_token_for(appid), reply.text
        assert fake.platform.calls["api_query_auth"] == 0


class TestNothingToCallWith:
    def test_an_authorizer_without_a_refresh_token_records_it_and_looks_it_up_hourly(
            self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        # The code is spent and the list does not show the authorizer.
        accepted(push(worker, message(fake, "authorized", code="queryauthcode@@@spent")))
        assert wait_for(lambda: fake.platform.calls["api_query_auth"] == 1, 10)
        replies = [worker.request("GET", f"/token?account={AUTHORIZER}") for _ in range(5)]
        assert all(r.status in (502, 503) for r in replies), [r.text for r in replies]
        assert fake.platform.calls["api_get_authorizer_list"] == 1, "looked up once an hour"
        assert fake.platform.calls["api_authorizer_token"] == 0
        status = worker.request("GET", f"/status?account={AUTHORIZER}").json["accounts"][0]
        assert status["last_error"]["wechat_errcode"] == 61023, status
        assert "own finding" in status["last_error"]["wechat_errmsg"]
        assert status["auto_refresh"] != "on", status

    def test_a_refused_refresh_token_stops_automatic_refreshes_until_authorized_again(
            self, platform_worker, fake):
        # Tokens that are due at once (60 s, inside the 900 s margin): every read and cron
        # run below would refresh them, were automatic refreshes not stopped.
        fake.platform.authorizer_expires_in = 60
        worker = platform_worker()
        push_ticket(worker)
        authorize(worker)
        # Another tool took the authorization over; the list no longer shows this one.
        fake.platform.refresh_tokens[AUTHORIZER] = "refreshtoken@@@elsewhere"
        fake.platform.listed_refresh.pop(AUTHORIZER)
        fake.platform.all_secrets.append("refreshtoken@@@elsewhere")

        def status():
            return worker.request("GET", f"/status?account={AUTHORIZER}").json["accounts"][0]

        def refused():
            worker.request("GET", f"/token?account={AUTHORIZER}")  # the token is due
            return (status()["last_error"] or {}).get("wechat_errcode") == 61023
        assert wait_for(refused, 20), status()
        time.sleep(1)  # a refresh under way when the refusal was recorded has settled
        calls = fake.platform.authorizer_calls[AUTHORIZER]
        for _ in range(3):
            worker.run_cron(lines=2)
            worker.request("GET", f"/token?account={AUTHORIZER}")
        time.sleep(2)
        assert fake.platform.authorizer_calls[AUTHORIZER] == calls, "no automatic retry"
        assert status()["auto_refresh"] != "on", status()
        # Authorized again: a new refresh token, and refreshes go on.
        fake.platform.refresh_tokens.pop(AUTHORIZER)
        authorize(worker)
        assert status()["auto_refresh"] == "on", status()
        for secret in fake.platform.all_secrets:
            assert secret not in worker.log()

    def test_a_component_without_a_ticket_records_it_and_waits(self, platform_worker, fake):
        worker = platform_worker(MIN_REFRESH_INTERVAL_SECS="60")
        assert_error(worker.request("GET", "/component/token"), 503, "no_verify_ticket")
        again = worker.request("GET", "/component/token")
        body = assert_error(again, 503, "no_verify_ticket")
        assert int(again.headers["retry-after"]) > 0
        assert "component_verify_ticket" in body["message"]
        component = fake.platform.appid
        status = worker.request("GET", f"/status?account={component}").json["accounts"][0]
        assert status["last_error"]["wechat_errcode"] == 61006, status
        assert "own finding" in status["last_error"]["wechat_errmsg"]
        assert fake.platform.calls["api_start_push_ticket"] == 1
        assert fake.platform.calls["api_component_token"] == 0
