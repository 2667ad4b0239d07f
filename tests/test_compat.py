"""WeChat's own paths and JSON, and a real WeChat SDK (wechatpy, from PyPI) pointed at the
worker with nothing but its API base."""

import json
from urllib.parse import urlencode

import pytest
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from harness import CLIENT_KEY
from setups import CORP, SCOPED_KEY, SECOND, several
from test_api import assert_error


def sdk_client(worker, appid, key=CLIENT_KEY):
    """wechatpy 1.8 reads its API base from `API_BASE_URL`, except for the token URL, which
    `fetch_access_token` hard-codes: the smallest subclass sets one and overrides the other."""

    class CentralServerClient(WeChatClient):
        API_BASE_URL = f"{worker.base_url}/cgi-bin/"

        def fetch_access_token(self):
            return self._fetch_access_token(
                url=self.API_BASE_URL + "token",
                params={"grant_type": "client_credential", "appid": self.appid,
                        "secret": self.secret},
            )

    return CentralServerClient(appid, key)


def wechat_get(worker, path, **params):
    reply = worker.request("GET", f"{path}?{urlencode(params)}", key=None)
    assert reply.status == 200, reply.text
    return reply.json


def stable_token(worker, **body):
    reply = worker.request("POST", "/cgi-bin/stable_token", key=None, body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
    assert reply.status == 200, reply.text
    return reply.json


class TestCompatibleEndpoints:
    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers, fake):
        return class_workers(**several(fake))

    def test_token_in_wechats_shape(self, worker, fake):
        answer = wechat_get(worker, "/cgi-bin/token", grant_type="client_credential",
                            appid=fake.appid, secret=CLIENT_KEY)
        assert set(answer) == {"access_token", "expires_in"}
        assert answer["access_token"] == fake.current_token_for(fake.appid)
        assert 7100 < answer["expires_in"] <= 7200
        # The account id works as the appid, and the token is the one GET /token serves.
        by_id = wechat_get(worker, "/cgi-bin/token", grant_type="client_credential",
                           appid="second", secret=CLIENT_KEY)
        assert by_id["access_token"] == worker.request("GET", "/token?account=second").json["access_token"]
        assert fake.calls == 2

    @pytest.mark.parametrize("params, errcode", [
        ({"grant_type": "password", "appid": "APP", "secret": CLIENT_KEY}, 40002),
        ({"grant_type": "client_credential", "appid": "wxnobody00000000", "secret": CLIENT_KEY}, 40013),
        ({"grant_type": "client_credential", "appid": "APP", "secret": "wrong-key-0123456789"}, 40125),
        ({"grant_type": "client_credential", "appid": "APP", "secret": SCOPED_KEY}, 40125),
        # A scoped key cannot tell an account outside its scope from one that does not exist.
        ({"grant_type": "client_credential", "appid": "wxnobody00000000", "secret": SCOPED_KEY},
         40125),
        ({"grant_type": "client_credential", "appid": "APP"}, 40125),
    ])
    def test_token_errors_in_wechats_shape(self, worker, fake, params, errcode):
        params = {k: (fake.appid if v == "APP" else v) for k, v in params.items()}
        answer = wechat_get(worker, "/cgi-bin/token", **params)
        assert answer["errcode"] == errcode and answer["errmsg"]
        assert CLIENT_KEY not in json.dumps(answer)
        assert fake.calls == 0

    def test_a_scoped_key_reaches_its_own_account(self, worker, fake):
        answer = wechat_get(worker, "/cgi-bin/token", grant_type="client_credential",
                            appid=SECOND[0], secret=SCOPED_KEY)
        second = worker.request("GET", "/token?account=second").json["access_token"]
        assert answer["access_token"] == second and fake.is_valid(second)

    def test_stable_token_normal_and_forced(self, worker, fake):
        current = worker.get_token().json["access_token"]
        answer = stable_token(worker, grant_type="client_credential", appid=fake.appid,
                              secret=CLIENT_KEY, force_refresh=False)
        assert answer["access_token"] == current and set(answer) == {"access_token", "expires_in"}
        # force_refresh names no rejected token: answered like a normal fetch, no upstream call.
        answer = stable_token(worker, grant_type="client_credential", appid=fake.appid,
                              secret=CLIENT_KEY, force_refresh=True)
        assert answer["access_token"] == current
        assert fake.calls == 0
        answer = stable_token(worker, grant_type="client_credential", appid=fake.appid,
                              secret="wrong-key-0123456789")
        assert answer["errcode"] == 40125

    def test_getticket_with_an_issued_token(self, worker, fake):
        token = worker.get_token().json["access_token"]
        answer = wechat_get(worker, "/cgi-bin/ticket/getticket", access_token=token, type="jsapi")
        assert answer["errcode"] == 0 and answer["errmsg"] == "ok"
        assert set(answer) == {"errcode", "errmsg", "ticket", "expires_in"}
        assert answer["ticket"] == worker.request("GET", "/ticket?type=jsapi").json["ticket"]
        card = wechat_get(worker, "/cgi-bin/ticket/getticket", access_token=token, type="wx_card")
        assert "-wx_card-" in card["ticket"]

    def test_getticket_identifies_the_account_by_its_token(self, worker, fake):
        corp_token = worker.request("GET", "/token?account=corp-app").json["access_token"]
        answer = wechat_get(worker, "/cgi-bin/ticket/getticket", access_token=corp_token,
                            type="jsapi")
        assert answer["ticket"].startswith(f"TICKET-{CORP[0]}-jsapi")
        wx_card = wechat_get(worker, "/cgi-bin/ticket/getticket", access_token=corp_token,
                             type="wx_card")
        assert wx_card["errcode"] == 40097

    @pytest.mark.parametrize("token", ["", "FAKE-not-issued-here", CLIENT_KEY])
    def test_getticket_refuses_tokens_it_did_not_issue(self, worker, fake, token):
        answer = wechat_get(worker, "/cgi-bin/ticket/getticket", access_token=token, type="jsapi")
        assert answer["errcode"] == 40001
        assert fake.ticket_calls == {}


def test_getticket_accepts_the_replaced_token_for_five_minutes(start_worker, fake):
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0")
    old = worker.get_token().json["access_token"]
    new = worker.request("POST", "/token/refresh").json["access_token"]
    assert new != old
    for token in (old, new):
        answer = wechat_get(worker, "/cgi-bin/ticket/getticket", access_token=token, type="jsapi")
        assert answer["errcode"] == 0, answer


def test_stable_token_force_refresh_never_kills_the_shared_token(start_worker, fake):
    # An SDK configured to always force would otherwise replace everyone's token each time.
    worker = start_worker(MIN_REFRESH_INTERVAL_SECS="0")
    before = worker.get_token().json["access_token"]
    for _ in range(3):
        answer = stable_token(worker, grant_type="client_credential", appid=fake.appid,
                              secret=CLIENT_KEY, force_refresh=True)
        assert answer["access_token"] == before
    assert fake.calls == 1 and fake.is_valid(before)


class TestWechatpy:
    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers, fake):
        return class_workers(**several(fake))

    def test_token_then_jsapi_ticket(self, worker, fake):
        client = sdk_client(worker, fake.appid)
        assert client.access_token == worker.get_token().json["access_token"]
        jsapi_ticket = client.jsapi.get_jsapi_ticket()
        assert jsapi_ticket == worker.request("GET", "/ticket?type=jsapi").json["ticket"]
        assert fake.calls == 1
        assert fake.ticket_calls_for(fake.appid, "jsapi") == 1

    def test_our_signature_matches_wechatpys(self, worker, fake):
        client = sdk_client(worker, fake.appid)
        url = "https://shop.example.com/page?x=1"
        ours = worker.request("GET", "/jssdk/signature?" + urlencode({"url": url})).json
        theirs = client.jsapi.get_jsapi_signature(
            ours["nonceStr"], client.jsapi.get_jsapi_ticket(), ours["timestamp"], url)
        assert ours["signature"] == theirs

    def test_a_wrong_key_is_the_sdks_own_error(self, worker, fake):
        client = sdk_client(worker, fake.appid, key="wrong-key-0123456789")
        with pytest.raises(WeChatClientException) as raised:
            client.fetch_access_token()
        assert raised.value.errcode == 40125
        assert fake.calls == 0

    def test_a_scoped_sdk_client_uses_its_account(self, worker, fake):
        client = sdk_client(worker, SECOND[0], key=SCOPED_KEY)
        assert client.access_token == worker.request("GET", "/token?account=second").json["access_token"]
        assert client.jsapi.get_jsapi_ticket().startswith(f"TICKET-{SECOND[0]}-jsapi")
        assert fake.calls_for(SECOND[0]) == 1
        assert fake.ticket_calls_for(SECOND[0], "jsapi") == 1


def test_compat_paths_check_methods(start_worker):
    worker = start_worker()
    assert_error(worker.request("POST", "/cgi-bin/token", body=""), 405, "method_not_allowed")
    assert_error(worker.request("GET", "/cgi-bin/stable_token"), 405, "method_not_allowed")
