"""The third-party platform (开放平台): WeChat's encrypted pushes (sealed by the tests with their
own crypto, `wechat_push`), the verify ticket kept, the component token, authorizations and
their tokens, tickets and gateway calls, healing, recovery, withdrawal, restarts, and wechatpy's
WeChatComponent against the compatible endpoints. The refusals come first."""

import json
import time

import pytest

import wechat_push
from harness import CLIENT_KEY, assert_sent_for, burst, wait_for
from test_api import assert_error

AUTHORIZER = "wxauthorizer000001"
OTHER_AUTHORIZER = "wxauthorizer000002"


def component_vars(fake, **overrides):
    platform = fake.platform
    component = {"appid": platform.appid, "secret": platform.secret, "token": platform.token,
                 "encoding_aes_key": platform.encoding_aes_key}
    return {"WECHAT_COMPONENT": json.dumps(component), "MIN_REFRESH_INTERVAL_SECS": "0",
            **overrides}


def push(worker, message, **seal):
    query, body = worker.fake_platform.seal(message, **seal)
    return worker.request("POST", f"/component/events?{query}", key=None, body=body,
                          headers={"Content-Type": "text/xml"})


def push_ticket(worker):
    ticket = worker.fake_platform.new_ticket()
    reply = push(worker, wechat_push.ticket_message(worker.fake_platform.appid, ticket))
    assert (reply.status, reply.text) == (200, "success"), reply.text
    return ticket


def authorize(worker, authorizer=AUTHORIZER, info_type="authorized"):
    platform = worker.fake_platform
    code = platform.new_authorization(authorizer)
    reply = push(worker, wechat_push.authorization_message(platform.appid, info_type, authorizer,
                                                           code))
    assert (reply.status, reply.text) == (200, "success"), reply.text
    assert wait_for(lambda: worker.request("GET", f"/token?account={authorizer}").status == 200,
                    15), "the authorization's code was exchanged"
    return worker.request("GET", f"/token?account={authorizer}").json["access_token"]


@pytest.fixture
def platform_worker(start_worker, fake):
    def start(**overrides):
        worker = start_worker(**component_vars(fake, **overrides))
        worker.fake_platform = fake.platform
        return worker
    return start


class TestRefusedPushes:
    def test_forged_wrong_garbage_and_oversized_pushes_store_nothing(self, platform_worker, fake):
        worker = platform_worker()
        platform = fake.platform
        message = wechat_push.ticket_message(platform.appid, platform.new_ticket())
        query, body = platform.seal(message)
        forged = query.replace("msg_signature=", "msg_signature=0")[:-1]
        reply = worker.request("POST", f"/component/events?{forged}", key=None, body=body,
                               headers={"Content-Type": "text/xml"})
        assert_error(reply, 401, "bad_signature")
        other_token = push(worker, message, token="another-token")
        assert_error(other_token, 401, "bad_signature")
        wrong_appid = assert_error(push(worker, message, appid="wxnotthisplatform0"), 400,
                                   "bad_request")
        assert "appid" in wrong_appid["message"]
        wrong_key = push(worker, message,
                         encoding_aes_key=wechat_push.new_encoding_aes_key())
        assert_error(wrong_key, 400, "bad_request")
        garbage = worker.request("POST", f"/component/events?{query}", key=None,
                                 body="<xml><Encrypt>not base64!</Encrypt>",
                                 headers={"Content-Type": "text/xml"})
        assert_error(garbage, 400, "bad_request")
        not_xml = worker.request("POST", f"/component/events?{query}", key=None, body="{}",
                                 headers={"Content-Type": "text/xml"})
        assert_error(not_xml, 400, "bad_request")
        big = worker.request("POST", f"/component/events?{query}", key=None,
                             body="<xml>" + "x" * (65 * 1024) + "</xml>",
                             headers={"Content-Type": "text/xml"})
        assert_error(big, 413, "payload_too_large")
        # Nothing was stored: still no ticket, so no component token.
        assert_error(worker.request("GET", "/component/token"), 503, "no_verify_ticket")
        assert platform.calls["api_component_token"] == 0

    def test_without_a_platform_its_routes_are_not_found(self, start_worker):
        worker = start_worker()
        assert_error(worker.request("GET", "/component/token"), 404, "not_found")
        assert_error(worker.request("POST", "/component/events", key=None, body="<xml/>"),
                     404, "not_found")

    def test_a_malformed_configuration_names_the_field(self, start_worker, fake):
        bad = json.loads(component_vars(fake)["WECHAT_COMPONENT"])
        bad["encoding_aes_key"] = "too-short"
        worker = start_worker(WECHAT_COMPONENT=json.dumps(bad))
        body = assert_error(worker.request("GET", "/token"), 500, "config_error")
        assert "WECHAT_COMPONENT" in body["message"] and "encoding_aes_key" in body["message"]
        assert "too-short" not in body["message"]


    def test_the_platforms_secret_calls_never_go_through_the_gateway(self, platform_worker,
                                                                     fake):
        worker = platform_worker()
        push_ticket(worker)
        authorize(worker)
        component = worker.request("GET", "/component/token").json["access_token"]
        for path in ("api_get_authorizer_list", "api_query_auth", "api_component_token",
                     "api_start_push_ticket"):
            keyed = worker.request("POST", f"/gateway/cgi-bin/component/{path}"
                                   f"?account={fake.platform.appid}", body="{}")
            assert_error(keyed, 403, "forbidden_route")
            passed = worker.request(
                "POST", f"/cgi-bin/component/{path}?component_access_token={component}",
                key=None, body="{}")
            assert passed.json["errcode"] != 0, passed.text
        assert fake.platform.calls["api_get_authorizer_list"] == 0
        info = worker.request("POST", "/gateway/cgi-bin/component/api_get_authorizer_info"
                              f"?account={fake.platform.appid}",
                              body=json.dumps({"component_appid": fake.platform.appid,
                                               "authorizer_appid": AUTHORIZER}))
        assert info.json["authorization_info"]["authorizer_appid"] == AUTHORIZER, info.text
        assert "refreshtoken@@@" not in info.text

    def test_a_forged_component_token_gets_nothing(self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        authorize(worker)
        reply = worker.request(
            "POST", "/cgi-bin/component/api_authorizer_token?component_access_token=forged",
            key=None, body=json.dumps({"authorizer_appid": AUTHORIZER}))
        assert reply.json["errcode"] == 40001 and "authorizer_access_token" not in reply.json
        # A client token is no component token either.
        token = worker.request("GET", "/token").json["access_token"]
        reply = worker.request(
            "POST", f"/cgi-bin/component/api_authorizer_token?component_access_token={token}",
            key=None, body=json.dumps({"authorizer_appid": AUTHORIZER}))
        assert reply.json["errcode"] == 40001


class TestVerifyTicket:
    def test_no_ticket_yet_answers_503_and_asks_wechat_to_push_once_an_hour(
            self, platform_worker, fake):
        worker = platform_worker()
        body = assert_error(worker.request("GET", "/component/token"), 503, "no_verify_ticket")
        assert "/component/events" in body["message"]
        assert_error(worker.request("GET", "/component/token"), 503, "no_verify_ticket")
        assert fake.platform.calls["api_start_push_ticket"] == 1
        assert fake.platform.calls["api_component_token"] == 0

    def test_a_pushed_ticket_gets_the_component_token_once_for_a_burst(
            self, platform_worker, fake):
        worker = platform_worker()
        fake.platform.latency_ms = 200
        push_ticket(worker)
        replies = burst(30, lambda: worker.request("GET", "/component/token"))
        assert all(r.status == 200 for r in replies), [r.text for r in replies][:2]
        tokens = {r.json["access_token"] for r in replies}
        assert len(tokens) == 1 and fake.platform.component_token_valid(tokens.pop())
        assert fake.platform.calls["api_component_token"] == 1
        answer = replies[0].json
        assert answer["account"] == fake.platform.appid and answer["expires_in"] > 7000

    def test_a_ticket_wechat_no_longer_takes_answers_503_and_asks_for_a_push(
            self, platform_worker, fake):
        worker = platform_worker()
        ticket = push_ticket(worker)
        assert wait_for(lambda: fake.platform.calls["api_component_token"] == 1, 10)
        fake.platform.tickets[ticket] = time.time() - 13 * 3600  # WeChat: expired (61005)
        stale = worker.request("GET", "/component/token").json["access_token"]
        refreshed = worker.request("POST", f"/token/refresh?account={fake.platform.appid}",
                                   body=json.dumps({"stale_token": stale}))
        body = assert_error(refreshed, 503, "no_verify_ticket")
        assert body["wechat_errcode"] == 61005
        assert fake.platform.calls["api_start_push_ticket"] == 1
        push_ticket(worker)  # WeChat pushes a new one: the next refresh works
        again = worker.request("POST", f"/token/refresh?account={fake.platform.appid}",
                               body=json.dumps({"stale_token": stale}))
        assert again.status == 200 and again.json["access_token"] != stale

    def test_a_ticket_wechat_never_issued_is_61006_and_a_replayed_older_one_is_ignored(
            self, platform_worker, fake):
        worker = platform_worker()
        forged = push(worker, wechat_push.ticket_message(fake.platform.appid, "ticket@@@forged"))
        assert forged.text == "success", "signed and sealed: WeChat's word, whatever it says"
        body = assert_error(worker.request("GET", "/component/token"), 503, "no_verify_ticket")
        assert body["wechat_errcode"] == 61006
        good = push_ticket(worker)
        assert worker.request("GET", "/component/token").status == 200
        old = fake.platform.new_ticket()
        message = wechat_push.ticket_message(fake.platform.appid, old,
                                             created_at=int(time.time()) - 3600)
        assert push(worker, message).text == "success"
        fake.platform.tickets.pop(old)  # were the replay stored, the next fetch would fail
        component = worker.request("GET", "/component/token").json["access_token"]
        refreshed = worker.request("POST", f"/token/refresh?account={fake.platform.appid}",
                                   body=json.dumps({"stale_token": component}))
        assert refreshed.status == 200, refreshed.text
        assert fake.platform.tickets_used[-1] == good, "the replay was not stored"

    def test_pushes_sealed_with_the_previous_key_are_read(self, platform_worker, fake):
        previous = fake.platform.encoding_aes_key
        component = json.loads(component_vars(fake)["WECHAT_COMPONENT"])
        component["encoding_aes_key"] = wechat_push.new_encoding_aes_key()
        component["previous_encoding_aes_key"] = previous
        worker = platform_worker(WECHAT_COMPONENT=json.dumps(component))
        push_ticket(worker)  # sealed with the previous key
        ticket = fake.platform.new_ticket()
        current = push(worker, wechat_push.ticket_message(fake.platform.appid, ticket),
                       encoding_aes_key=component["encoding_aes_key"])
        assert current.text == "success"
        assert worker.request("GET", "/component/token").status == 200

    def test_a_message_padded_with_a_whole_block_of_32_is_read(self, platform_worker, fake):
        worker = platform_worker()
        appid = fake.platform.appid
        base = len(wechat_push.ticket_message(appid, "")) + 16 + 4 + len(appid)
        ticket = "ticket@@@" + "p" * ((32 - (base + 9) % 32) % 32)
        assert (base + len(ticket)) % 32 == 0, "aligned: WeChat pads a whole block of 32"
        fake.platform.tickets[ticket] = time.time()
        reply = push(worker, wechat_push.ticket_message(appid, ticket))
        assert reply.text == "success"
        assert worker.request("GET", "/component/token").status == 200


class TestAuthorizers:
    def test_an_authorization_makes_an_account_that_works_everywhere(self, platform_worker,
                                                                      fake):
        worker = platform_worker()
        push_ticket(worker)
        token = authorize(worker)
        assert fake.is_valid(token) and fake.platform.calls["api_query_auth"] == 1
        ticket = worker.request("GET", f"/ticket?account={AUTHORIZER}&type=jsapi")
        assert ticket.status == 200 and ticket.json["ticket"].startswith("TICKET-")
        call = worker.request("GET", f"/gateway/cgi-bin/user/info?account={AUTHORIZER}&openid=o1")
        assert call.status == 200 and call.json["openid"] == "o1"
        passed = worker.request("GET", f"/cgi-bin/user/info?access_token={token}&openid=o2",
                                key=None)
        assert passed.json["openid"] == "o2"
        assert_sent_for(fake, AUTHORIZER, last=2)  # its own token, never the component's
        status = worker.request("GET", f"/status?account={AUTHORIZER}").json["accounts"][0]
        assert (status["kind"], status["api"], status["refresh_token_stored"]) == \
            ("authorizer", "authorizer", True)
        listed = worker.request("GET", "/component/authorizers").json
        [entry] = listed["authorizers"]
        assert entry["appid"] == AUTHORIZER and entry["token"]["fingerprint"]
        assert entry["authorized_at"] and listed["next_cursor"] is None
        everything = json.dumps(status) + json.dumps(listed)
        for secret in fake.platform.all_secrets + [token]:
            assert secret not in everything

    def test_refreshes_go_through_the_platform_once_for_a_burst_and_keep_new_refresh_tokens(
            self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        stale = authorize(worker)
        fake.platform.rotate_refresh = True
        fake.platform.latency_ms = 200
        replies = burst(30, lambda: worker.request(
            "POST", f"/token/refresh?account={AUTHORIZER}",
            body=json.dumps({"stale_token": stale})))
        assert all(r.status == 200 for r in replies), [r.text for r in replies][:2]
        assert fake.platform.authorizer_calls[AUTHORIZER] == 1
        fresh = replies[0].json["access_token"]
        # The rotated refresh token was kept: the next refresh is accepted with it.
        again = worker.request("POST", f"/token/refresh?account={AUTHORIZER}",
                               body=json.dumps({"stale_token": fresh}))
        assert again.status == 200, again.text
        assert fake.platform.authorizer_calls[AUTHORIZER] == 2
        assert fake.platform.calls["api_get_authorizer_list"] == 0

    @pytest.mark.parametrize("errcode", [40001, 42001])
    def test_a_rejected_component_token_is_refreshed_once_and_the_call_sent_again(
            self, platform_worker, fake, errcode):
        worker = platform_worker()
        push_ticket(worker)
        stale = authorize(worker)
        component_token = worker.request("GET", "/component/token").json["access_token"]
        fake.rejection_errcode = errcode
        fake.platform.revoked.add(component_token)
        before = fake.platform.calls["api_component_token"]
        refreshed = worker.request("POST", f"/token/refresh?account={AUTHORIZER}",
                                   body=json.dumps({"stale_token": stale}))
        assert refreshed.status == 200, refreshed.text
        assert fake.platform.calls["api_component_token"] == before + 1
        assert fake.platform.calls["api_authorizer_token"] == 2, "refused, then accepted"

    def test_a_refused_refresh_token_is_recovered_from_the_list_once(self, platform_worker,
                                                                     fake):
        worker = platform_worker()
        push_ticket(worker)
        stale = authorize(worker)
        # WeChat replaced the refresh token (another tool re-authorized): the list has it.
        fake.platform.refresh_tokens[AUTHORIZER] = "refreshtoken@@@replaced"
        fake.platform.listed_refresh[AUTHORIZER] = "refreshtoken@@@replaced"
        fake.platform.all_secrets.append("refreshtoken@@@replaced")
        recovered = worker.request("POST", f"/token/refresh?account={AUTHORIZER}",
                                   body=json.dumps({"stale_token": stale}))
        assert recovered.status == 200, recovered.text
        assert fake.platform.calls["api_get_authorizer_list"] == 1
        # Now WeChat refuses it and the list no longer shows the authorizer.
        fake.platform.refresh_tokens[AUTHORIZER] = "refreshtoken@@@unknown"
        fake.platform.listed_refresh.pop(AUTHORIZER)
        stale = recovered.json["access_token"]
        failed = worker.request("POST", f"/token/refresh?account={AUTHORIZER}",
                                body=json.dumps({"stale_token": stale}))
        body = assert_error(failed, 502, "authorizer_refresh_token_invalid")
        assert "authorize" in body["message"]
        # The list is looked up at most hourly per authorizer, however many clients ask.
        assert fake.platform.calls["api_get_authorizer_list"] == 1

    def test_a_new_authorization_replaces_the_refresh_token_and_a_failed_exchange_recovers(
            self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        first = authorize(worker)
        first_refresh = fake.platform.refresh_tokens[AUTHORIZER]
        # updateauthorized: a new code, exchanged for a new token and refresh token.
        code = fake.platform.new_authorization(AUTHORIZER)
        update = push(worker, wechat_push.authorization_message(
            fake.platform.appid, "updateauthorized", AUTHORIZER, code))
        assert update.text == "success"
        assert wait_for(lambda: fake.platform.calls["api_query_auth"] == 2, 10)
        assert fake.platform.refresh_tokens[AUTHORIZER] != first_refresh
        assert wait_for(lambda: worker.request("GET", f"/token?account={AUTHORIZER}")
                        .json["access_token"] != first, 10)
        refreshed = worker.request("POST", f"/token/refresh?account={AUTHORIZER}",
                                   body=json.dumps({"stale_token": first}))
        assert refreshed.status == 200, "the new refresh token is the one kept"
        # A code WeChat no longer takes (expired): the exchange fails, and the stored refresh
        # token still serves.
        expired = push(worker, wechat_push.authorization_message(
            fake.platform.appid, "updateauthorized", AUTHORIZER, "queryauthcode@@@expired"))
        assert expired.text == "success"
        assert wait_for(lambda: fake.platform.calls["api_query_auth"] == 3, 10)
        stale = worker.request("GET", f"/token?account={AUTHORIZER}").json["access_token"]
        again = worker.request("POST", f"/token/refresh?account={AUTHORIZER}",
                               body=json.dumps({"stale_token": stale}))
        assert again.status == 200, again.text

    def test_a_first_exchange_that_fails_is_recovered_from_the_authorizer_list(
            self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        # WeChat lists the authorizer (authorized elsewhere), but the pushed code is spent.
        fake.platform.refresh_tokens[AUTHORIZER] = "refreshtoken@@@listed"
        fake.platform.listed_refresh[AUTHORIZER] = "refreshtoken@@@listed"
        fake.platform.all_secrets.append("refreshtoken@@@listed")
        reply = push(worker, wechat_push.authorization_message(
            fake.platform.appid, "authorized", AUTHORIZER, "queryauthcode@@@spent"))
        assert reply.text == "success"
        assert wait_for(lambda: fake.platform.calls["api_query_auth"] == 1, 10)
        assert wait_for(lambda: worker.request("GET", f"/token?account={AUTHORIZER}").status
                        == 200, 15), "recovered from the authorizer list"
        assert fake.platform.calls["api_get_authorizer_list"] == 1

    def test_keys_scoped_by_authorizer_appid(self, platform_worker, fake):
        scoped = "authorizer-scoped-key-0123456789"
        worker = platform_worker(CLIENT_KEYS=f"{CLIENT_KEY},{scoped}@{AUTHORIZER}")
        push_ticket(worker)
        authorize(worker)
        assert worker.request("GET", f"/token?account={AUTHORIZER}", key=scoped).status == 200
        assert_error(worker.request("GET", f"/token?account={OTHER_AUTHORIZER}", key=scoped),
                     403, "forbidden_account")
        assert_error(worker.request("GET", "/component/token", key=scoped), 403,
                     "forbidden_account")

    def test_a_withdrawn_authorization_takes_the_account_away(self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        token = authorize(worker)
        authorize(worker, OTHER_AUTHORIZER)
        # The listing pages, one authorizer a page.
        first = worker.request("GET", "/component/authorizers?limit=1").json
        assert [a["appid"] for a in first["authorizers"]] == [AUTHORIZER]
        cursor = first["next_cursor"]
        assert cursor
        second = worker.request("GET", f"/component/authorizers?limit=1&cursor={cursor}").json
        assert [a["appid"] for a in second["authorizers"]] == [OTHER_AUTHORIZER]
        assert second["next_cursor"] is None
        assert_error(worker.request("GET", "/component/authorizers?limit=0"), 400, "bad_request")

        gone = push(worker, wechat_push.authorization_message(fake.platform.appid,
                                                              "unauthorized", AUTHORIZER))
        assert gone.text == "success"
        assert_error(worker.request("GET", f"/token?account={AUTHORIZER}"), 404,
                     "unknown_account")
        listed = worker.request("GET", "/component/authorizers").json["authorizers"]
        assert [a["appid"] for a in listed] == [OTHER_AUTHORIZER]
        # Its token is nobody's any more: the pass-through sends it nowhere.
        sent = len(fake.api_requests)
        time.sleep(2)  # past the isolate's one-second memory of a recognized token
        passed = worker.request("GET", f"/cgi-bin/user/info?access_token={token}&openid=o1",
                                key=None)
        assert passed.status == 200 and passed.json["errcode"] != 0, passed.text
        assert len(fake.api_requests) == sent

    def test_the_ticket_and_refresh_tokens_survive_a_restart(self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        token = authorize(worker)
        calls = dict(fake.platform.calls)
        worker.restart()
        assert worker.request("GET", f"/token?account={AUTHORIZER}").json["access_token"] == token
        refreshed = worker.request("POST", f"/token/refresh?account={AUTHORIZER}",
                                   body=json.dumps({"stale_token": token}))
        assert refreshed.status == 200, "the refresh token was kept"
        component = worker.request("GET", "/component/token").json["access_token"]
        fake.platform.revoked.add(component)
        again = worker.request("POST", f"/token/refresh?account={AUTHORIZER}",
                               body=json.dumps({"stale_token": refreshed.json["access_token"]}))
        assert again.status == 200, "the verify ticket was kept: a new component token"
        assert fake.platform.calls["api_component_token"] == calls["api_component_token"] + 1
        assert fake.platform.calls["api_start_push_ticket"] == 0

    def test_preauthcode_takes_auth_type_1_to_6_and_the_component_scope(self, platform_worker,
                                                                         fake):
        component_key = "component-only-key-0123456789"
        token_key = "token-only-key-0123456789abc"
        worker = platform_worker(
            CLIENT_KEYS=f"{CLIENT_KEY},{component_key}:component,{token_key}:token")
        push_ticket(worker)

        def preauth(key=CLIENT_KEY, **fields):
            body = json.dumps({"redirect_uri": "https://shop.example/done", **fields})
            return worker.request("POST", "/component/preauthcode", key=key, body=body)

        assert "&auth_type=3" in preauth().json["authorization_url"], "the default"
        for auth_type in (1, 6):
            url = preauth(auth_type=auth_type).json["authorization_url"]
            assert f"&auth_type={auth_type}" in url
        for wrong in (0, 7, "3"):
            assert_error(preauth(auth_type=wrong), 400, "bad_request")
        # The component routes are their own scope.
        assert preauth(key=component_key).status == 200
        assert worker.request("GET", "/component/authorizers", key=component_key).status == 200
        assert_error(preauth(key=token_key), 403, "forbidden_route")
        assert_error(worker.request("GET", "/component/authorizers", key=token_key), 403,
                     "forbidden_route")
        assert_error(worker.request("GET", "/token?account=" + fake.platform.appid,
                                    key=component_key), 403, "forbidden_route")
        for path in ("/component/token", "/component/authorizers"):
            get, head = (worker.request(method, path) for method in ("GET", "HEAD"))
            assert (head.status, head.text) == (get.status, "") and get.status == 200
        # WeChat stops taking the component token: the pre-auth code call heals it once and
        # is sent again with its successor.
        component = worker.request("GET", "/component/token").json["access_token"]
        fake.platform.revoked.add(component)
        before = dict(fake.platform.calls)
        assert preauth().status == 200
        assert fake.platform.calls["api_component_token"] == before["api_component_token"] + 1
        assert fake.platform.calls["api_create_preauthcode"] == \
            before["api_create_preauthcode"] + 2, "refused, then sent again"

    def test_preauthcode_gives_the_authorization_pages(self, platform_worker, fake):
        worker = platform_worker()
        push_ticket(worker)
        body = json.dumps({"redirect_uri": "https://shop.example/authorized?x=1",
                           "auth_type": 3})
        pc = worker.request("POST", "/component/preauthcode", body=body)
        assert pc.status == 200, pc.text
        assert pc.json["pre_auth_code"] in fake.platform.pre_auth_codes
        assert pc.json["authorization_url"].startswith(
            "https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=")
        assert "redirect_uri=https%3A%2F%2Fshop.example%2Fauthorized%3Fx%3D1" in \
            pc.json["authorization_url"]
        phone = worker.request("POST", "/component/preauthcode?mobile=1", body=body)
        assert phone.json["authorization_url"].endswith("#wechat_redirect")
        assert_error(worker.request("POST", "/component/preauthcode",
                                    body=json.dumps({"redirect_uri": "ftp://x"})), 400,
                     "bad_request")


def test_the_component_and_its_authorizers_are_refreshed_by_their_alarms_alone(
        platform_worker, fake):
    # Tokens live 24 s and are due 10 s before expiry; nobody reads, no cron runs.
    fake.platform.component_expires_in = 24
    fake.platform.authorizer_expires_in = 24
    worker = platform_worker(REFRESH_MARGIN_SECS="10", MIN_REFRESH_INTERVAL_SECS="1")
    push_ticket(worker)
    first = authorize(worker)
    calls = (fake.platform.calls["api_component_token"], fake.platform.authorizer_calls[AUTHORIZER])
    # Both due at about +14 s.
    assert wait_for(lambda: fake.platform.calls["api_component_token"] > calls[0], 40), \
        "the component's alarm"
    assert wait_for(lambda: fake.platform.authorizer_calls[AUTHORIZER] > calls[1], 20), \
        "the authorizer's alarm"
    # The new token reaches KV just after the call the fake counted.
    def served():
        return worker.request("GET", f"/token?account={AUTHORIZER}").json
    assert wait_for(lambda: served()["access_token"] != first, 10), served()
    served = served()
    assert served["access_token"] != first and fake.is_valid(served["access_token"])
    assert served["expires_in"] > 10


def test_wechatpys_component_client_works_against_the_compatible_endpoints(platform_worker,
                                                                           fake):
    from wechatpy.component import WeChatComponent

    worker = platform_worker()
    push_ticket(worker)
    token = authorize(worker)

    class CentralComponent(WeChatComponent):
        API_BASE_URL = f"{worker.base_url}/cgi-bin"

    # Its appsecret is a client key; its verify ticket is the server's business.
    sdk = CentralComponent(fake.platform.appid, CLIENT_KEY, "unused-token",
                           wechat_push.new_encoding_aes_key())
    sdk.session.set("component_verify_ticket", "ignored-by-the-server")
    fetched = sdk.fetch_access_token()
    served = worker.request("GET", "/component/token").json["access_token"]
    assert fetched["component_access_token"] == served
    refreshed = sdk.refresh_authorizer_token(AUTHORIZER, "whatever-the-sdk-kept")
    assert refreshed["authorizer_access_token"] == token
    assert refreshed["authorizer_refresh_token"] not in fake.platform.all_secrets
    info = sdk.get_authorizer_info(AUTHORIZER)  # through the pass-through
    assert info["authorization_info"]["authorizer_appid"] == AUTHORIZER
    assert "authorizer_refresh_token" not in info["authorization_info"], "kept by the server"
    wrong = worker.request("POST", "/cgi-bin/component/api_component_token", key=None,
                           body=json.dumps({"component_appid": fake.platform.appid,
                                            "component_appsecret": "wrong-key-0123456789"}))
    assert wrong.json["errcode"] == 40125


def test_no_platform_secret_reaches_the_log(platform_worker, fake):
    worker = platform_worker()
    push_ticket(worker)
    authorize(worker)
    worker.request("POST", "/component/preauthcode",
                   body=json.dumps({"redirect_uri": "https://shop.example/"}))
    log = worker.log()
    for secret in [*fake.platform.all_secrets, fake.platform.secret, fake.platform.token,
                   fake.platform.encoding_aes_key, *fake.platform.component_tokens]:
        assert secret not in log
