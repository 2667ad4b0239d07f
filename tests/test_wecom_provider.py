"""WeCom service providers (issue 23): the URL check, suite tickets pushed to each suite's
指令回调URL and kept (the newest, for 30 minutes from its TimeStamp), the suite token fetched
with them and nothing sent without one, the provider token, and the refusals (a forged
signature, another suite's push, garbage) that store nothing."""

import json
import time

import pytest

from fake_wecom_provider import DK_SUITE_ID, PROVIDER_CORPID, SUITE_ID
from harness import wait_for
from test_admin import KEY_A
from test_alerts import alert_vars, receiver  # noqa: F401 (the webhook fixture)
from test_api import assert_error

# Encrypted corpids are case-sensitive: kept as WeCom gives them.
CORPID = "wwCorpAbc-0123"
CORP = f"{SUITE_ID}.{CORPID}"


@pytest.fixture
def provider_worker(start_worker, fake):
    def start(**overrides):
        # Corporations' permanent codes are sealed like runtime appsecrets.
        return start_worker(WECOM_API_BASE=fake.base_url, ACCOUNTS_ENCRYPTION_KEY=KEY_A,
                            **fake.wecom_provider.worker_vars(), **overrides)
    return start


def push(worker, fake, suite_id, message, **seal):
    query, body = fake.wecom_provider.sealed(suite_id, message, **seal)
    return worker.request("POST", f"/wecom/suites/{suite_id}/events?{query}", key=None,
                          body=body, headers={"Content-Type": "text/xml"})


def push_ticket(worker, fake, suite_id=SUITE_ID, timestamp=None, ticket=None):
    wecom = fake.wecom_provider
    if ticket is None:
        ticket, timestamp = wecom.new_ticket(suite_id, timestamp)
    reply = push(worker, fake, suite_id, wecom.ticket_message(suite_id, ticket, timestamp))
    assert (reply.status, reply.text) == (200, "success"), reply.text
    return ticket


def cron_all(worker):
    """Fires the cron and waits until it has visited every account."""
    accounts = len(worker.request("GET", "/status").json["accounts"])
    return worker.run_cron(lines=accounts)


def suite_token(worker, suite_id=SUITE_ID):
    return worker.request("GET", f"/wecom/suites/{suite_id}/token")


def test_the_url_check_answers_the_echostr_sealed_for_the_providers_corpid(provider_worker,
                                                                          fake):
    worker = provider_worker()
    wecom = fake.wecom_provider
    for suite_id in (SUITE_ID, DK_SUITE_ID):
        reply = worker.request("GET", f"/wecom/suites/{suite_id}/events?"
                               f"{wecom.url_check(suite_id, 'echo-1234567890')}", key=None)
        assert (reply.status, reply.text) == (200, "echo-1234567890")
    forged = wecom.url_check(SUITE_ID, "echo").replace("msg_signature=", "msg_signature=0")
    assert_error(worker.request("GET", f"/wecom/suites/{SUITE_ID}/events?{forged}", key=None),
                 401, "bad_signature")
    sealed_for_another = wecom.url_check(SUITE_ID, "echo", receive_id="wwsomeoneelse")
    assert_error(worker.request("GET", f"/wecom/suites/{SUITE_ID}/events?{sealed_for_another}",
                                key=None), 400, "bad_request")
    assert_error(worker.request("GET", f"/wecom/suites/wwunknown/events?{forged}", key=None),
                 404, "not_found")


def test_the_suite_token_waits_for_a_ticket_then_is_fetched_with_it(provider_worker, fake):
    worker = provider_worker()
    wecom = fake.wecom_provider
    # No ticket yet: nothing to fetch with, and nothing sent to WeCom.
    body = assert_error(suite_token(worker), 503, "no_suite_ticket")
    assert "/wecom/suites/" in body["message"]
    assert wecom.calls("get_suite_token") == 0
    push_ticket(worker, fake)
    assert wait_for(lambda: worker.events("suite_ticket_received"), 10)
    reply = suite_token(worker)
    assert reply.status == 200, reply.text
    token = reply.json["access_token"]
    assert wecom.is_valid(token, SUITE_ID)
    assert reply.json["account"] == SUITE_ID and 7100 <= reply.json["expires_in"] <= 7200
    assert wecom.token_calls[-1] == {"endpoint": "get_suite_token", "owner": SUITE_ID,
                                     "ticket_known": True}
    # Kept: served again without a call, and by /token too.
    assert suite_token(worker).json["access_token"] == token
    assert worker.request("GET", f"/token?account={SUITE_ID}").json["access_token"] == token
    assert wecom.calls("get_suite_token") == 1
    # The other suite has its own ticket and token.
    assert_error(suite_token(worker, DK_SUITE_ID), 503, "no_suite_ticket")


def test_refused_pushes_store_nothing(provider_worker, fake):
    worker = provider_worker()
    wecom = fake.wecom_provider
    ticket, timestamp = wecom.new_ticket(SUITE_ID)
    message = wecom.ticket_message(SUITE_ID, ticket, timestamp)
    # A forged signature (another token).
    assert_error(push(worker, fake, SUITE_ID, message, token="not-the-suites-token"), 401,
                 "bad_signature")
    # Sealed for another receive id than the suite's.
    assert_error(push(worker, fake, SUITE_ID, message, receive_id=DK_SUITE_ID), 400,
                 "bad_request")
    # Another suite's ticket, sealed correctly, sent to this suite's URL.
    other = wecom.ticket_message(DK_SUITE_ID, *wecom.new_ticket(DK_SUITE_ID))
    refused = assert_error(push(worker, fake, SUITE_ID, other), 400, "bad_request")
    assert "another suite" in refused["message"]
    # Garbage.
    garbage = worker.request("POST", f"/wecom/suites/{SUITE_ID}/events?msg_signature=x",
                             key=None, body="not xml", headers={"Content-Type": "text/xml"})
    assert_error(garbage, 400, "bad_request")
    assert_error(suite_token(worker), 503, "no_suite_ticket")
    assert wecom.calls("get_suite_token") == 0
    assert worker.events("suite_ticket_received") == []


def test_a_pending_code_and_the_ticket_outlive_a_restart(provider_worker, fake):
    worker = provider_worker()
    wecom = fake.wecom_provider
    # A corporation installs the app before any ticket came: its code waits, stored.
    code = wecom.authorize_corp(SUITE_ID, CORPID)
    reply = push(worker, fake, SUITE_ID, wecom.auth_message(SUITE_ID, "create_auth", code=code))
    assert reply.text == "success"
    assert wait_for(lambda: worker.events("wecom_auth_codes_waiting"), 10)
    worker.restart()  # every object evicted
    # The first ticket brings the suite token, and the waiting code is exchanged, once.
    push_ticket(worker, fake)
    assert wait_for(lambda: worker.request("GET", f"/token?account={CORP}").status == 200, 15)
    assert wecom.exchanges == 1
    worker.restart()
    entry = worker.request("GET", f"/status?account={SUITE_ID}").json["accounts"][0]
    assert entry["suite_ticket"]["age_secs"] < 60, "the ticket was kept"
    worker.run_cron()
    assert wecom.exchanges == 1 and wecom.calls("get_suite_token") == 1


def test_a_ticket_older_than_thirty_minutes_is_never_sent(provider_worker, fake):
    worker = provider_worker()
    wecom = fake.wecom_provider
    push_ticket(worker, fake, timestamp=int(time.time()) - 31 * 60)
    assert_error(suite_token(worker), 503, "no_suite_ticket")
    assert wecom.calls("get_suite_token") == 0
    # A new push brings a ticket that works, at once (no backoff for the missing one).
    push_ticket(worker, fake)
    reply = suite_token(worker)
    assert reply.status == 200, reply.text
    assert wecom.calls("get_suite_token") == 1


def test_the_newest_ticket_is_used_and_an_older_push_ignored(provider_worker, fake):
    worker = provider_worker(MIN_REFRESH_INTERVAL_SECS="0")
    wecom = fake.wecom_provider
    now = int(time.time())
    newest = push_ticket(worker, fake, timestamp=now)
    # WeCom's retry of an older push, arriving late: stored no more.
    push_ticket(worker, fake, timestamp=now - 600)
    assert wait_for(lambda: [e["stored"] for e in worker.events("suite_ticket_received")]
                    == [True, False], 10)
    entry = worker.request("GET", f"/status?account={SUITE_ID}").json["accounts"][0]
    assert entry["suite_ticket"]["created_at"] == now
    # The next call WeCom gets is made with the newest.
    assert worker.request("POST", f"/token/refresh?account={SUITE_ID}").status == 200
    assert wecom.sent_tickets[-1] == newest


def test_a_ticket_wecom_refuses_is_dropped_until_the_next_push(provider_worker, fake):
    worker = provider_worker()
    wecom = fake.wecom_provider
    # A ticket WeCom never issued (or another provider's), sealed correctly.
    push_ticket(worker, fake, ticket="SUITE-TICKET-not-issued-by-wecom",
                timestamp=int(time.time()))
    body = assert_error(suite_token(worker), 503, "no_suite_ticket")
    assert body["wechat_errcode"] == 40085, body
    assert wecom.calls("get_suite_token") == 1
    assert_error(suite_token(worker), 503, "no_suite_ticket")
    assert wecom.calls("get_suite_token") == 1, "the refused ticket is not sent again"
    push_ticket(worker, fake)
    assert suite_token(worker).status == 200
    assert wecom.calls("get_suite_token") == 2


def test_the_provider_token(provider_worker, fake):
    worker = provider_worker()
    wecom = fake.wecom_provider
    reply = worker.request("GET", "/wecom/provider/token")
    assert reply.status == 200, reply.text
    token = reply.json["access_token"]
    assert wecom.is_valid(token, PROVIDER_CORPID)
    assert reply.json["account"] == "wecom_provider"
    assert worker.request("GET", "/wecom/provider/token").json["access_token"] == token
    assert wecom.calls("get_provider_token") == 1
    # Its corpid names no other account (a provider's own apps share it).
    assert_error(worker.request("GET", f"/token?appid={PROVIDER_CORPID}"), 404,
                 "unknown_account")


def test_status_shows_suites_with_their_tickets_age_and_the_provider(provider_worker, fake):
    worker = provider_worker()
    push_ticket(worker, fake, timestamp=int(time.time()) - 120)
    assert suite_token(worker).status == 200
    entry = worker.request("GET", f"/status?account={SUITE_ID}").json["accounts"][0]
    assert entry["kind"] == "wecom_suite"
    assert 119 <= entry["suite_ticket"]["age_secs"] <= 130
    assert entry["token"]["fingerprint"]
    provider = worker.request("GET", "/status?account=wecom_provider").json["accounts"][0]
    assert provider["kind"] == "wecom_provider"
    # The ticket's age in /metrics, read back with Prometheus's own parser.
    from prometheus_client.parser import text_string_to_metric_families

    def ages():
        """The suite's summary reaches the registry after its answers: read until it has."""
        text = worker.request("GET", "/metrics").text
        return {s.labels["account"]: s.value
                for f in text_string_to_metric_families(text) for s in f.samples
                if f.name == "wechat_token_edge_pushed_ticket_age_seconds"}
    assert wait_for(lambda: SUITE_ID in ages(), 10), ages()
    assert 119 <= ages()[SUITE_ID] <= 130, ages()


def test_a_stale_suite_ticket_alerts_at_the_webhook_and_a_fresh_one_recovers(
        provider_worker, fake, receiver):
    worker = provider_worker(**alert_vars(receiver))
    wecom = fake.wecom_provider
    # 25 minutes old: still usable (30), but WeCom's pushes every ten have stopped coming.
    push_ticket(worker, fake, timestamp=int(time.time()) - 25 * 60)
    assert wait_for(lambda: ("suite_ticket_stale", "started") in receiver.states(), 15), \
        receiver.states()
    stale = next(b for b in receiver.bodies() if b["condition"] == "suite_ticket_stale")
    assert stale["account"] == SUITE_ID and f"/wecom/suites/{SUITE_ID}/events" in stale["text"]
    push_ticket(worker, fake)
    assert wait_for(lambda: ("suite_ticket_stale", "recovered") in receiver.states(), 15), \
        receiver.states()
    text = json.dumps(receiver.bodies())
    assert not any(secret in text for secret in [*wecom.all_secrets, *wecom.tickets])


def test_a_bad_suite_configuration_is_named(start_worker, fake):
    suites = json.loads(fake.wecom_provider.worker_vars()["WECOM_SUITES"])
    suites[0]["encoding_aes_key"] = "short"
    worker = start_worker(WECOM_SUITES=json.dumps(suites))
    body = assert_error(worker.request("GET", "/token"), 500, "config_error")
    assert "WECOM_SUITES" in body["message"] and "encoding_aes_key" in body["message"]
    assert suites[0]["suite_secret"] not in body["message"]


def authorize(worker, fake, suite_id=SUITE_ID, corpid=CORPID):
    """A corporation installs the app: WeCom pushes its AuthCode; its token comes."""
    wecom = fake.wecom_provider
    code = wecom.authorize_corp(suite_id, corpid)
    reply = push(worker, fake, suite_id, wecom.auth_message(suite_id, "create_auth", code=code))
    assert (reply.status, reply.text) == (200, "success"), reply.text
    account = f"{suite_id}.{corpid}"
    assert wait_for(lambda: worker.request("GET", f"/token?account={account}").status == 200,
                    15), worker.request("GET", f"/token?account={account}").text
    return code


class TestCorporations:
    def test_an_authorization_makes_the_corporation_an_account(self, provider_worker, fake):
        worker = provider_worker()
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        code = authorize(worker, fake)
        reply = worker.request("GET", f"/token?account={CORP}")
        token = reply.json["access_token"]
        assert wecom.is_valid(token, CORPID), "the corporation's own token"
        assert reply.json["account"] == CORP and reply.json["appid"] == CORPID
        assert wecom.exchanges == 1
        # WeCom's retry of the same push: the code is not sent again.
        again = push(worker, fake, SUITE_ID,
                     wecom.auth_message(SUITE_ID, "create_auth", code=code))
        assert (again.status, again.text) == (200, "success")
        assert wait_for(lambda: [e["stored"] for e in worker.events("wecom_auth_code_received")]
                        == [True, False], 10)
        assert wecom.exchanges == 1
        assert wait_for(lambda: [e["outcome"] for e in worker.events("wecom_corp_authorized")]
                        == ["ok"], 10)
        entry = worker.request("GET", f"/status?account={CORP}").json["accounts"][0]
        assert entry["kind"] == "wecom_corp" and entry["token"]["fingerprint"]
        assert entry["permanent_code"] == "kept"

    def test_the_auth_info_names_the_app_and_a_change_auth_reads_it_again(
            self, provider_worker, fake):
        worker = provider_worker()
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        authorize(worker, fake)

        def shown():
            entry = worker.request("GET", f"/status?account={CORP}").json["accounts"][0]
            return entry["corp_name"], entry["agents"]
        # Read once registered: the agentid WeCom gave the suite's app in this corporation.
        agentid = wecom.agentid(CORPID)
        assert wait_for(lambda: shown() == ("Fake Corp", [{"agentid": agentid,
                                                           "name": "Fake App"}]), 15), shown()
        assert wecom.auth_info_calls == 1
        # Kept in the corporation's storage: read once, not at every visit, nor after a restart.
        worker.restart()
        cron_all(worker)
        assert shown()[0] == "Fake Corp"
        assert wecom.auth_info_calls == 1
        # The administrator changes the app; WeCom says so with change_auth.
        wecom.change_app(CORPID, "Renamed App")
        change = wecom.auth_message(SUITE_ID, "change_auth", corpid=CORPID)
        assert push(worker, fake, SUITE_ID, change).text == "success"
        assert wait_for(lambda: shown()[1] == [{"agentid": agentid, "name": "Renamed App"}],
                        15), shown()
        assert wecom.auth_info_calls == 2
        assert wait_for(lambda: [(e["outcome"], e["agents"])
                                 for e in worker.events("wecom_auth_info")]
                        == [("ok", 1), ("ok", 1)], 10)
        # A corporation this server does not know: acknowledged, nothing read.
        other = wecom.auth_message(SUITE_ID, "change_auth", corpid="wwNotInstalled")
        assert push(worker, fake, SUITE_ID, other).text == "success"
        assert wait_for(lambda: [e["known"] for e in worker.events("wecom_auth_changed")]
                        == [True, False], 10)
        assert wecom.auth_info_calls == 2
        # Never a permanent code in the log.
        assert not any(code in worker.log() for code in wecom.issued_permanent)

    def test_a_permanent_code_whose_registration_failed_is_kept_for_the_cron(
            self, provider_worker, fake):
        # The registry fails the first registration of each run of the worker.
        worker = provider_worker(TEST_FAIL_REGISTRY_PUTS="1")
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        code = wecom.authorize_corp(SUITE_ID, CORPID)
        install = wecom.auth_message(SUITE_ID, "create_auth", code=code)
        assert push(worker, fake, SUITE_ID, install).text == "success"

        def attempts():
            return [(e["outcome"] == "ok", e["kept_before"])
                    for e in worker.events("wecom_corp_authorized")]
        assert wait_for(lambda: attempts() == [(False, False)], 15), attempts()
        assert_error(worker.request("GET", f"/token?account={CORP}"), 404, "unknown_account")
        # WeCom gave the permanent code once; it is kept, sealed, across a restart, and the
        # cron registers the corporation with it (the restarted registry fails once more).
        worker.restart()
        cron_all(worker)
        assert wait_for(lambda: attempts() == [(False, False), (False, True)], 15), attempts()
        cron_all(worker)
        assert wait_for(lambda: attempts() == [(False, False), (False, True), (True, True)],
                        15), attempts()
        reply = worker.request("GET", f"/token?account={CORP}")
        assert reply.status == 200, reply.text
        assert wecom.is_valid(reply.json["access_token"], CORPID)
        assert wecom.exchanges == 1, "the code was exchanged once"
        # Registered: no longer kept, so a later cron registers nothing again.
        cron_all(worker)
        assert len(attempts()) == 3
        assert not any(secret in worker.log() for secret in wecom.issued_permanent)

    def test_a_withdrawal_drops_a_kept_permanent_code(self, provider_worker, fake):
        worker = provider_worker(TEST_FAIL_REGISTRY_PUTS="1")
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        code = wecom.authorize_corp(SUITE_ID, CORPID)
        install = wecom.auth_message(SUITE_ID, "create_auth", code=code,
                                     timestamp=int(time.time()) - 5)
        assert push(worker, fake, SUITE_ID, install).text == "success"
        assert wait_for(lambda: [e["outcome"] for e in worker.events("wecom_corp_authorized")]
                        == ["internal_error"], 15), worker.events("wecom_corp_authorized")
        # Withdrawn before the cron's retry: the kept code goes with it.
        cancel = wecom.auth_message(SUITE_ID, "cancel_auth", corpid=CORPID)
        assert push(worker, fake, SUITE_ID, cancel).text == "success"
        cron_all(worker)
        assert len(worker.events("wecom_corp_authorized")) == 1, "nothing left to register"
        assert_error(worker.request("GET", f"/token?account={CORP}"), 404, "unknown_account")

    def test_a_push_that_could_not_be_stored_is_answered_5xx_and_its_retry_taken(
            self, provider_worker, fake):
        # The first two storage writes of pushed messages fail.
        worker = provider_worker(TEST_FAIL_PUSH_STORES="2")
        wecom = fake.wecom_provider
        ticket, timestamp = wecom.new_ticket(SUITE_ID)
        ticket_push = wecom.ticket_message(SUITE_ID, ticket, timestamp)
        code = wecom.authorize_corp(SUITE_ID, CORPID)
        install = wecom.auth_message(SUITE_ID, "create_auth", code=code)
        # Not stored: not `success`, so WeCom pushes again; nothing is kept meanwhile.
        for message in (install, ticket_push):
            failed = push(worker, fake, SUITE_ID, message)
            assert failed.status >= 500 and failed.text != "success", failed.text
        assert_error(suite_token(worker), 503, "no_suite_ticket")
        assert worker.events("suite_ticket_received") == []
        assert wecom.calls("get_suite_token") == 0
        # WeCom's retries of the same two pushes are stored, and acted on once.
        for message in (install, ticket_push):
            assert push(worker, fake, SUITE_ID, message).text == "success"
        assert wait_for(lambda: worker.request("GET", f"/token?account={CORP}").status == 200,
                        15)
        assert wecom.exchanges == 1
        assert [e["stored"] for e in worker.events("wecom_auth_code_received")] == [True]

    def test_a_withdrawal_removes_the_corporation_and_a_late_one_nothing(self, provider_worker,
                                                                         fake):
        worker = provider_worker()
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        authorize(worker, fake)
        # A withdrawal from before this authorization, arriving late: ignored.
        stale = wecom.auth_message(SUITE_ID, "cancel_auth", timestamp=int(time.time()) - 600,
                                   corpid=CORPID)
        assert push(worker, fake, SUITE_ID, stale).text == "success"
        assert worker.request("GET", f"/token?account={CORP}").status == 200
        cancel = wecom.auth_message(SUITE_ID, "cancel_auth", timestamp=int(time.time()) + 1,
                                    corpid=CORPID)
        assert push(worker, fake, SUITE_ID, cancel).text == "success"
        assert_error(worker.request("GET", f"/token?account={CORP}"), 404, "unknown_account")
        assert wait_for(lambda: [e["removed"] for e in worker.events("wecom_corp_cancelled")]
                        == [False, True], 10)

    def test_a_withdrawal_before_the_codes_exchange_keeps_it_from_registering(
            self, provider_worker, fake):
        worker = provider_worker()
        wecom = fake.wecom_provider
        now = int(time.time())
        # Installed, then removed, while no ticket had come yet: the code waited.
        code = wecom.authorize_corp(SUITE_ID, CORPID)
        install = wecom.auth_message(SUITE_ID, "create_auth", timestamp=now - 5, code=code)
        assert push(worker, fake, SUITE_ID, install).text == "success"
        cancel = wecom.auth_message(SUITE_ID, "cancel_auth", timestamp=now, corpid=CORPID)
        assert push(worker, fake, SUITE_ID, cancel).text == "success"
        push_ticket(worker, fake)
        assert wait_for(lambda: [e["outcome"] for e in worker.events("wecom_corp_authorized")]
                        == ["conflict"], 15)
        assert_error(worker.request("GET", f"/token?account={CORP}"), 404, "unknown_account")

    def test_a_refused_suite_token_is_replaced_once_for_a_corporations_call(
            self, provider_worker, fake):
        worker = provider_worker(MIN_REFRESH_INTERVAL_SECS="0")
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        authorize(worker, fake)
        # WeCom drops every suite token (as after a suite secret reset): the corporation's
        # next refresh gets 40082, has the suite token replaced, and succeeds.
        wecom.expire_tokens(SUITE_ID)
        suites_before = wecom.calls("get_suite_token")
        reply = worker.request("POST", f"/token/refresh?account={CORP}")
        assert reply.status == 200, reply.text
        assert wecom.is_valid(reply.json["access_token"], CORPID)
        assert wecom.calls("get_suite_token") == suites_before + 1

    def test_a_revoked_permanent_code_stops_automatic_refreshes(self, provider_worker, fake):
        worker = provider_worker(MIN_REFRESH_INTERVAL_SECS="0")
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        authorize(worker, fake)
        assert wait_for(lambda: wecom.auth_info_calls == 1, 10)
        wecom.revoke(CORPID)
        reply = worker.request("POST", f"/token/refresh?account={CORP}")
        body = assert_error(reply, 502, "wechat_error")
        assert body["wechat_errcode"] == 40084
        entry = worker.request("GET", f"/status?account={CORP}").json["accounts"][0]
        assert entry["auto_refresh"] != "on", entry
        assert entry["permanent_code"] == "refused"
        # A new authorization brings a new permanent code, and automatic refreshes back (and
        # the app as it is now).
        wecom.change_app(CORPID, "Reinstalled App")
        code = wecom.authorize_corp(SUITE_ID, CORPID)
        reply = push(worker, fake, SUITE_ID,
                     wecom.auth_message(SUITE_ID, "create_auth", code=code))
        assert reply.text == "success"
        assert wait_for(lambda: len(worker.events("wecom_corp_authorized")) == 2, 15)
        assert wecom.exchanges == 2
        entry = worker.request("GET", f"/status?account={CORP}").json["accounts"][0]
        assert entry["auto_refresh"] == "on" and entry["permanent_code"] == "kept", entry
        reply = worker.request("POST", f"/token/refresh?account={CORP}")
        assert reply.status == 200 and wecom.is_valid(reply.json["access_token"], CORPID)
        # Registered with the new code once, and what it authorized read again with it.
        cron_all(worker)
        assert [e["kept_before"] for e in worker.events("wecom_corp_authorized")] == [False] * 2
        assert wait_for(lambda: wecom.auth_info_calls == 2, 10), wecom.auth_info_calls

        def app_names():
            entry = worker.request("GET", f"/status?account={CORP}").json["accounts"][0]
            return [agent["name"] for agent in entry["agents"] or []]
        assert wait_for(lambda: app_names() == ["Reinstalled App"], 10), app_names()


    def test_a_reset_permanent_code_replaces_the_old_one(self, provider_worker, fake):
        worker = provider_worker(MIN_REFRESH_INTERVAL_SECS="0")
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        authorize(worker, fake)
        # 代开发: the corporation's permanent code is reset; WeCom pushes a code for the new one.
        wecom.revoke(CORPID)
        code = wecom.authorize_corp(SUITE_ID, CORPID)
        reset = wecom.auth_message(SUITE_ID, "reset_permanent_code", code=code)
        assert push(worker, fake, SUITE_ID, reset).text == "success"
        assert wait_for(lambda: len(worker.events("wecom_corp_authorized")) == 2, 15)
        reply = worker.request("POST", f"/token/refresh?account={CORP}")
        assert reply.status == 200, "the new permanent code is the one used"
        assert wecom.is_valid(reply.json["access_token"], CORPID)

    def test_a_corporations_jsapi_ticket(self, provider_worker, fake):
        worker = provider_worker()
        push_ticket(worker, fake)
        authorize(worker, fake)
        reply = worker.request("GET", f"/ticket?account={CORP}&type=jsapi")
        assert reply.status == 200, reply.text
        assert reply.json["ticket"] in fake.tickets_issued
        assert fake.ticket_calls[(CORPID, "jsapi")] == 1, "with the corporation's own token"
        assert_error(worker.request("GET", f"/ticket?account={CORP}&type=wx_card"), 400,
                     "bad_request")
        assert_error(worker.request("GET", f"/ticket?account={SUITE_ID}&type=jsapi"), 400,
                     "bad_request")

    def test_wechats_quota_rid_and_clear_apis_are_never_asked_for_wecom_accounts(
            self, provider_worker, fake):
        admin = "admin-key-wecom-0123456789abcdef"
        worker = provider_worker(ADMIN_KEYS=admin, QUOTA_WATCH_PATHS="/cgi-bin/message/send",
                                 TEST_QUOTA_WATCH_SECS="1")
        push_ticket(worker, fake)
        authorize(worker, fake)
        for account in (SUITE_ID, CORP, "wecom_provider"):
            for path in (f"/quota?account={account}&path=/cgi-bin/message/send",
                         f"/diagnostics/rid?account={account}&rid=6620d1f0-1a2b"):
                body = assert_error(worker.request("GET", path), 400, "bad_request")
                assert "WeCom" in body["message"]
            cleared = worker.request("POST", f"/admin/accounts/{account}/clear-quota", key=admin)
            assert cleared.status in (400, 404), cleared.text
        cron_all(worker)

        def watch_rounds():
            return sum(1 for r in fake.openapi.requests if r["path"] == "/cgi-bin/openapi/quota/get")
        # The official account beside them is watched every second: two more of its rounds
        # pass, in which a watched WeCom account would have asked too.
        base = watch_rounds()
        assert wait_for(lambda: watch_rounds() >= base + 2, 15), fake.openapi.requests
        wecom_tokens = set(fake.wecom_provider.tokens)
        wecom_ids = {SUITE_ID, CORPID, PROVIDER_CORPID}
        sent = [r for r in fake.openapi.requests
                if r["access_token"] in wecom_tokens or r["appid"] in wecom_ids]
        assert sent == [], "no WeCom credential went to WeChat"


class TestGateway:
    def test_a_suites_and_a_corporations_calls_carry_their_own_tokens(self, provider_worker,
                                                                      fake):
        worker = provider_worker()
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        authorize(worker, fake)
        reply = worker.request("GET", f"/gateway/cgi-bin/service/get_pre_auth_code"
                               f"?account={SUITE_ID}")
        assert reply.status == 200 and reply.json["pre_auth_code"] == f"PREAUTH-{SUITE_ID}", \
            reply.text
        reply = worker.request("GET", f"/gateway/cgi-bin/agent/get?account={CORP}&agentid=7")
        assert reply.status == 200 and reply.json["name"] == f"app of {CORPID}", reply.text
        assert [(c["path"], c["owner"], c["keys"]) for c in wecom.api_calls] == [
            ("/cgi-bin/service/get_pre_auth_code", SUITE_ID, ["suite_access_token"]),
            ("/cgi-bin/agent/get", CORPID, ["access_token", "agentid"]),
        ]

    def test_a_rejected_corporation_token_is_healed_once(self, provider_worker, fake):
        worker = provider_worker(MIN_REFRESH_INTERVAL_SECS="0")
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        authorize(worker, fake)
        wecom.expire_tokens(CORPID)
        corp_calls = wecom.calls("get_corp_token")
        reply = worker.request("GET", f"/gateway/cgi-bin/agent/get?account={CORP}&agentid=7")
        assert reply.status == 200 and reply.json["errcode"] == 0, reply.text
        assert wecom.calls("get_corp_token") == corp_calls + 1
        assert [c["owner"] for c in wecom.api_calls] == [None, CORPID]

    def test_the_service_calls_that_carry_secrets_are_never_forwarded(self, provider_worker,
                                                                     fake):
        worker = provider_worker()
        push_ticket(worker, fake)
        for path in ("/cgi-bin/service/get_suite_token", "/cgi-bin/service/get_corp_token",
                     "/cgi-bin/service/v2/get_permanent_code",
                     "/cgi-bin/service/v2/get_auth_info",
                     "/cgi-bin/Service/get_provider_token/"):
            reply = worker.request("POST", f"/gateway{path}?account={SUITE_ID}", body="{}")
            assert_error(reply, 403, "forbidden_route")
        login = worker.request("GET", f"/gateway/sns/jscode2session?account={SUITE_ID}&js_code=c")
        assert_error(login, 400, "bad_request")
        # The server's own token calls only (a forwarded one would carry the body "{}").
        assert all(c["owner"] for c in fake.wecom_provider.token_calls)
        assert fake.wecom_provider.exchanges == 0 and fake.wecom_provider.api_calls == []


class TestCompatibleEndpoints:
    """An SDK whose WeCom API host points at this server, its secret fields holding a client
    key, gets the server's tokens; WeCom is never asked for them."""

    @staticmethod
    def post(worker, path, body, query=""):
        reply = worker.request("POST", f"{path}{query}", key=None, body=json.dumps(body))
        assert reply.status == 200, reply.text
        return reply.json

    def test_suite_corporation_and_provider_tokens(self, provider_worker, fake):
        from harness import CLIENT_KEY
        worker = provider_worker()
        wecom = fake.wecom_provider
        push_ticket(worker, fake)
        authorize(worker, fake)
        calls = len(wecom.token_calls)
        suite = self.post(worker, "/cgi-bin/service/get_suite_token",
                          {"suite_id": SUITE_ID, "suite_secret": CLIENT_KEY,
                           "suite_ticket": "whatever-the-sdk-kept"})
        assert "errcode" not in suite and wecom.is_valid(suite["suite_access_token"], SUITE_ID)
        corp = self.post(worker, "/cgi-bin/service/get_corp_token",
                         {"auth_corpid": CORPID, "permanent_code": CLIENT_KEY},
                         f"?suite_access_token={suite['suite_access_token']}")
        assert wecom.is_valid(corp["access_token"], CORPID), corp
        provider = self.post(worker, "/cgi-bin/service/get_provider_token",
                             {"corpid": PROVIDER_CORPID, "provider_secret": CLIENT_KEY})
        assert wecom.is_valid(provider["provider_access_token"], PROVIDER_CORPID)
        assert len(wecom.token_calls) == calls + 1, "only the provider's first token"
        # Refusals in WeCom's shape.
        wrong_key = self.post(worker, "/cgi-bin/service/get_suite_token",
                              {"suite_id": SUITE_ID, "suite_secret": "not-a-client-key"})
        assert wrong_key["errcode"] == 40001, wrong_key
        unknown = self.post(worker, "/cgi-bin/service/get_suite_token",
                            {"suite_id": "wwnosuchsuite", "suite_secret": CLIENT_KEY})
        assert unknown["errcode"] == 40083, unknown
        forged = self.post(worker, "/cgi-bin/service/get_corp_token",
                           {"auth_corpid": CORPID, "permanent_code": CLIENT_KEY},
                           "?suite_access_token=not-one-this-server-issued")
        assert forged["errcode"] == 40082, forged
        other_corp = self.post(worker, "/cgi-bin/service/get_corp_token",
                               {"auth_corpid": "wwnotauthorized", "permanent_code": CLIENT_KEY},
                               f"?suite_access_token={suite['suite_access_token']}")
        assert other_corp["errcode"] == 40084, other_corp
        wrong_corp = self.post(worker, "/cgi-bin/service/get_provider_token",
                               {"corpid": "wwother", "provider_secret": CLIENT_KEY})
        assert wrong_corp["errcode"] == 40013, wrong_corp
