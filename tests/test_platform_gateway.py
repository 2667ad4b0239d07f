"""The third-party platform's calls through the gateway (issue 18): its secret calls refused in
every spelling, refresh tokens taken out of every answer made with the component token or for
an authorizer (and an answer that cannot be read is not passed on), an authorizer's users
logging in through the platform, and the component token in the parameter WeChat documents
for each call. The fake records which token went upstream and routes paths as a decoding
relay delivers them."""

import json

import pytest

import wechat_push

from harness import CLIENT_KEY
from test_api import assert_error
from test_gateway import raw_call
from test_admin import KEY_A
from test_platform import AUTHORIZER, authorize, component_vars, push, push_ticket


@pytest.fixture
def worker(start_worker, fake):
    # One per test: the fake's platform forgets its tokens between tests.
    worker = start_worker(**component_vars(fake))
    worker.fake_platform = fake.platform
    return worker


@pytest.fixture
def authorized(worker, fake):
    """A ticket, the component token and one authorizer (the fake is reset between tests)."""
    push_ticket(worker)
    authorize(worker)
    component = worker.request("GET", "/component/token")
    assert component.status == 200, component.text
    fake.api_requests.clear()
    return component.json["access_token"]


SECRET_CALLS = [
    "/cgi-bin/component/api_get_authorizer_list/",
    "/cgi-bin/COMPONENT/api_get_authorizer_list",
    "/cgi-bin/compone%6Et/api_get_authorizer_list",
    "/cgi-bin/component/api_authorizer_toke%6E",
    "/cgi-bin/component/API_QUERY_AUTH",
    "/cgi-bin/component/api_component_token/",
]


@pytest.mark.parametrize("path", SECRET_CALLS)
def test_the_platforms_secret_calls_are_refused_in_every_spelling(worker, fake, authorized,
                                                                   path):
    body = json.dumps({"component_appid": fake.platform.appid, "offset": 0, "count": 500,
                       "authorizer_appid": AUTHORIZER})
    status, _, keyed = raw_call(worker, "POST", f"/gateway{path}?account={fake.platform.appid}",
                                body=body.encode(), headers={"Content-Type": "application/json"})
    assert status in (400, 403), keyed
    assert json.loads(keyed)["error"] in ("bad_request", "forbidden_route")
    status, _, passed = raw_call(
        worker, "POST", f"{path}?component_access_token={authorized}", body=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": ""})
    assert status == 200 and json.loads(passed)["errcode"] != 0, passed
    assert not any(r["raw_path"] == path for r in fake.api_requests), "it reached WeChat"
    assert fake.platform.calls["api_get_authorizer_list"] == 0
    assert fake.platform.calls["api_query_auth"] == 1, "the authorization's exchange only"
    assert fake.platform.calls["api_authorizer_token"] == 0
    assert b"refreshtoken@@@" not in keyed + passed


@pytest.mark.parametrize("path", [
    "/cgi-bin/component/api_get_authorizer_info",
    "/cgi-bin/COMPONENT/api_get_authorizer_info",
    "/cgi-bin/component/Api_Get_Authorizer_Info/",
])
def test_platform_answers_lose_their_refresh_tokens_however_the_path_is_spelt(
        worker, fake, authorized, path):
    body = json.dumps({"component_appid": fake.platform.appid, "authorizer_appid": AUTHORIZER})
    keyed = worker.request("POST", f"/gateway{path}?account={fake.platform.appid}", body=body)
    assert keyed.status == 200, keyed.text
    assert "authorization_info" in keyed.json, keyed.text
    assert keyed.json["authorization_info"]["authorizer_appid"] == AUTHORIZER
    passed = worker.request("POST", f"{path}?component_access_token={authorized}", key=None,
                            body=body)
    assert passed.json["authorization_info"]["authorizer_appid"] == AUTHORIZER, passed.text
    for reply in (keyed, passed):
        assert "refresh_token" not in reply.text and "refreshtoken@@@" not in reply.text
    assert [r["token_appid"] for r in fake.api_requests] == [fake.platform.appid] * 2
    assert all(r["query"] == {"component_access_token": "***"} for r in fake.api_requests)


def test_a_platform_answer_that_is_not_json_is_not_passed_on(worker, fake, authorized):
    fake.platform.raw_nick_name = "shop\x01name"  # a raw control character: not JSON
    body = json.dumps({"component_appid": fake.platform.appid, "authorizer_appid": AUTHORIZER})
    path = "/cgi-bin/component/api_get_authorizer_info"
    keyed = worker.request("POST", f"/gateway{path}?account={fake.platform.appid}", body=body)
    assert_error(keyed, 502, "upstream_bad_response")
    passed = worker.request("POST", f"{path}?component_access_token={authorized}", key=None,
                            body=body)
    assert passed.status == 200 and passed.json["errcode"] == -1, passed.text
    assert len(fake.api_requests) == 2
    assert "refreshtoken@@@" not in keyed.text + passed.text


def test_an_authorizers_users_log_in_through_the_platform(worker, fake, authorized):
    fake.login_codes.update({"js-1", "js-2", "oauth-1"})
    keyed = worker.request("GET", f"/gateway/sns/jscode2session?account={AUTHORIZER}"
                           "&js_code=js-1&grant_type=authorization_code")
    assert keyed.status == 200 and keyed.json["openid"] == "openid-js-1", keyed.text
    passed = worker.request(
        "GET", f"/sns/component/jscode2session?appid={AUTHORIZER}&js_code=js-2"
        f"&grant_type=authorization_code&component_appid={fake.platform.appid}"
        f"&component_access_token={authorized}", key=None)
    assert passed.status == 200 and passed.json["openid"] == "openid-js-2", passed.text
    # Web OAuth: the code exchange, then the user's own refresh token (kept: it is the
    # user's, not an authorizer's).
    exchanged = worker.request("GET", f"/gateway/sns/oauth2/access_token?account={AUTHORIZER}"
                               "&code=oauth-1&grant_type=authorization_code")
    assert exchanged.status == 200 and exchanged.json["openid"] == "openid-oauth-1", \
        exchanged.text
    refresh = exchanged.json["refresh_token"]
    renewed = worker.request(
        "GET", f"/gateway/sns/oauth2/refresh_token?account={AUTHORIZER}"
        f"&refresh_token={refresh}&grant_type=refresh_token")
    assert renewed.status == 200 and renewed.json["openid"] == "openid-oauth-1", renewed.text
    assert [r["path"] for r in fake.api_requests] == [
        "/sns/component/jscode2session", "/sns/component/jscode2session",
        "/sns/oauth2/component/access_token", "/sns/oauth2/component/refresh_token"]
    for call in fake.api_requests:
        assert call["token_appid"] == fake.platform.appid, call
        assert call["query"]["appid"] == AUTHORIZER
        assert call["query"]["component_appid"] == fake.platform.appid
        assert "secret" not in call["query"] and "account" not in call["query"]


def test_the_platform_itself_has_no_users_to_log_in(worker, fake, authorized):
    fake.login_codes.add("js-3")
    reply = worker.request("GET", f"/gateway/sns/jscode2session?account={fake.platform.appid}"
                           "&js_code=js-3&grant_type=authorization_code")
    body = assert_error(reply, 400, "bad_request")
    assert "authorizer" in body["message"]
    assert fake.api_requests == []


def test_the_component_token_goes_in_the_parameter_wechat_documents(worker, fake, authorized):
    keyed = worker.request("GET", f"/gateway/wxa/gettemplatelist?account={fake.platform.appid}")
    assert keyed.status == 200 and keyed.json["template_list"], keyed.text
    passed = worker.request("GET", f"/wxa/gettemplatelist?access_token={authorized}", key=None)
    assert passed.status == 200 and passed.json["template_list"], passed.text
    for call in fake.api_requests:
        assert call["query"] == {"access_token": "***"}, call
        assert call["token_appid"] == fake.platform.appid


def test_a_client_key_never_reaches_wechat(worker, fake, authorized):
    fake.login_codes.add("js-4")
    worker.request("GET", f"/sns/jscode2session?appid={AUTHORIZER}&secret={CLIENT_KEY}"
                   "&js_code=js-4&grant_type=authorization_code", key=None)
    [call] = fake.api_requests
    assert call["path"] == "/sns/component/jscode2session"
    assert "secret" not in call["query"] and call["token_appid"] == fake.platform.appid


def test_an_unknown_token_on_a_platform_only_deployment_reaches_no_object(start_worker, fake):
    # Only the platform: its authorizers register at runtime, so an unknown token is nobody's,
    # and no object is asked (the component's would ask WeChat to push a ticket).
    worker = start_worker(**component_vars(fake, WECHAT_APPID="", WECHAT_APPSECRET=""))
    reply = worker.request("GET", "/cgi-bin/user/info?access_token=unknown-token&openid=o",
                           key=None)
    assert reply.status == 200 and reply.json["errcode"] == 40001, reply.text
    assert fake.platform.calls["api_start_push_ticket"] == 0
    assert fake.api_requests == []


def test_an_authorizers_file_streams_back_and_its_json_is_read(worker, fake, authorized):
    picture = bytes(range(256)) * 64
    boundary = "platform-boundary-0123456789"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="media"; '
            f'filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n').encode()
    body += picture + f"\r\n--{boundary}--\r\n".encode()
    status, _, uploaded = raw_call(
        worker, "POST", f"/gateway/cgi-bin/media/upload?account={AUTHORIZER}&type=image",
        body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, uploaded
    media_id = json.loads(uploaded)["media_id"]
    status, headers, downloaded = raw_call(
        worker, "GET", f"/gateway/cgi-bin/media/get?account={AUTHORIZER}&media_id={media_id}")
    assert status == 200 and downloaded == picture, "a file passes as it is"
    assert headers["content-type"] == "image/jpeg"
    assert [r["token_appid"] for r in fake.api_requests] == [AUTHORIZER, AUTHORIZER]


def test_an_account_registered_with_the_appid_is_a_conflict_too(start_worker, fake):
    admin = "admin-key-for-the-conflict-test-0123456789"
    worker = start_worker(**component_vars(fake, ADMIN_KEYS=admin, ACCOUNTS_ENCRYPTION_KEY=KEY_A))
    worker.fake_platform = fake.platform
    fake.add_app(AUTHORIZER, "fake-secret-registered-0123456789")
    put = worker.request("PUT", "/admin/accounts/shop-registered", key=admin, body=json.dumps(
        {"kind": "official_account", "appid": AUTHORIZER,
         "secret": "fake-secret-registered-0123456789"}))
    assert put.status == 201, put.text
    push_ticket(worker)
    code = fake.platform.new_authorization(AUTHORIZER)
    refused = push(worker, wechat_push.authorization_message(fake.platform.appid, "authorized",
                                                             AUTHORIZER, code))
    assert_error(refused, 409, "conflict")
    assert fake.platform.calls["api_query_auth"] == 0
    reply = worker.request("GET", f"/token?appid={AUTHORIZER}")
    assert reply.status == 200 and reply.json["account"] == "shop-registered", reply.text


def test_an_admin_put_over_an_authorizer_is_a_conflict(start_worker, fake):
    admin = "admin-key-for-the-conflict-test-0123456789"
    worker = start_worker(**component_vars(fake, ADMIN_KEYS=admin, ACCOUNTS_ENCRYPTION_KEY=KEY_A))
    worker.fake_platform = fake.platform
    push_ticket(worker)
    token = authorize(worker)
    put = worker.request("PUT", f"/admin/accounts/{AUTHORIZER}", key=admin, body=json.dumps(
        {"kind": "official_account", "appid": AUTHORIZER,
         "secret": "fake-secret-registered-0123456789"}))
    body = assert_error(put, 409, "conflict")
    assert "authorizer" in body["message"]
    shown = worker.request("GET", f"/admin/accounts/{AUTHORIZER}", key=admin).json
    assert shown["kind"] == "authorizer", "the registration stands"
    status = worker.request("GET", f"/status?account={AUTHORIZER}").json["accounts"][0]
    assert status["refresh_token_stored"] is True
    assert worker.request("GET", f"/token?account={AUTHORIZER}").json["access_token"] == token
