"""The API gateway: WeChat API calls through the edge, keyed or passed through as an SDK sends
them, with the credential added, a rejected token healed once for everyone, the forwarding rules
of a security boundary, and bodies too large to keep streamed both ways. The refusals come
first."""

import hashlib
import http.client
import io
import json
import os
import re
import time

import pytest

from harness import CLIENT_KEY, assert_sent_for, burst, wait_for
from setups import CORP, SCOPED_KEY, SECOND, STABLE, several
from test_api import assert_error

SIGNER = "signer-key-0123456789abcdef"


def raw_get(worker, path, headers=None):
    """A GET whose path is sent exactly as written (urllib would re-encode some of it)."""
    conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def raw_call(worker, method, path, body=None, headers=None, chunked=False):
    """A keyed call whose answer is kept as bytes (a download is binary); with `chunked`, the
    body goes without a Content-Length, in pieces."""
    conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=60)
    try:
        all_headers = {"Authorization": f"Bearer {CLIENT_KEY}", **(headers or {})}
        if chunked:
            pieces = (body[i:i + 65536] for i in range(0, len(body), 65536))
            conn.request(method, path, body=pieces, headers=all_headers, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, answer_headers, response.read()
    finally:
        conn.close()


def next_gateway_event(worker, seen, path, where=lambda event: True):
    """The first gateway log line for `path` (and `where`) after the first `seen` lines. A
    line may reach the log after its answer, after the next call's, and after the next test
    took its `seen`: `where` tells this test's line from an earlier test's."""
    def found():
        return [e for e in worker.events("gateway_call")[seen:]
                if e["path"] == path and where(e)]
    assert wait_for(lambda: found(), 10), f"no gateway_call line for {path}"
    return found()[0]


def multipart(field, filename, data):
    boundary = "fake-boundary-7MA4YWxkTrZu0gW"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n').encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def worker(fake):
    from conftest import WorkerFactory
    factory = WorkerFactory(fake)
    keys = f"{CLIENT_KEY},{SCOPED_KEY}@second,{SIGNER}:signature"
    yield factory(**several(fake, CLIENT_KEYS=keys, MIN_REFRESH_INTERVAL_SECS="0"))
    factory.close()


class TestRefusals:
    def test_the_keyed_way_needs_a_key_with_the_gateway_route(self, worker, fake):
        path = "/gateway/cgi-bin/user/info?openid=o1"
        assert_error(worker.request("GET", path, key=None), 401, "unauthorized")
        assert_error(worker.request("GET", path, key=SIGNER), 403, "forbidden_route")
        assert_error(worker.request("GET", path, key=SCOPED_KEY), 403, "forbidden_account")
        assert fake.api_requests == [] and fake.calls == 0

    @pytest.mark.parametrize("path", [
        "/gateway/cgi-bin/user%2finfo",
        "/gateway/cgi-bin/user%5cinfo",
        "/gateway/cgi-bin//user/info",
    ])
    def test_paths_that_could_leave_the_api_are_refused_before_anything_is_sent(
            self, worker, fake, path):
        status, text = raw_get(worker, path, {"Authorization": f"Bearer {CLIENT_KEY}"})
        assert status == 400 and json.loads(text)["error"] == "bad_request", text
        assert fake.api_requests == [] and fake.calls == 0

    @pytest.mark.parametrize("path", [
        "/gateway/cgi-bin/user/info%00",
        "/gateway/http://evil.example/cgi-bin/user/info",
        "/gateway/cgi-bin/user/info;http://evil.example/",
    ])
    def test_nul_bytes_and_urls_are_refused(self, worker, fake, path):
        status, text = raw_get(worker, path, {"Authorization": f"Bearer {CLIENT_KEY}"})
        assert status == 400 and json.loads(text)["error"] == "bad_request", text
        assert fake.api_requests == [] and fake.calls == 0

    @pytest.mark.parametrize("path", [
        "/gateway/cgi-bin\\..\\..\\admin",
        "/gateway/cgi-bin/%2e%2e/%2e%2e/admin",
        "/gateway/cgi-bin/.%2e/.%2E/admin",
    ])
    def test_backslash_and_encoded_dot_escapes_never_leave_the_api(self, worker, fake, path):
        # The runtime's URL parser turns `\` into `/` and resolves `.`/`..` segments, encoded
        # or not, before the worker sees the path: what is left is checked like any path.
        status, text = raw_get(worker, path, {"Authorization": f"Bearer {CLIENT_KEY}"})
        assert status == 404 and json.loads(text)["error"] == "not_found", text
        assert fake.api_requests == []

    def test_a_backslash_or_dot_inside_the_api_reaches_only_the_path_it_resolves_to(
            self, worker, fake):
        for path in ("/gateway/cgi-bin/user\\info?openid=o", "/gateway/cgi-bin/./user/info"
                     "?openid=o", "/gateway/cgi-bin/%2e/user/info?openid=o"):
            status, text = raw_get(worker, path, {"Authorization": f"Bearer {CLIENT_KEY}"})
            assert status == 200, text
        assert [r["path"] for r in fake.api_requests] == ["/cgi-bin/user/info"] * 3

    def test_pass_through_refusals_come_in_wechats_shape_and_send_nothing(self, worker, fake):
        token = worker.request("GET", "/token?account=second").json["access_token"]
        status, text = raw_get(worker, f"/cgi-bin/user%2finfo?access_token={token}&openid=o")
        assert status == 200 and json.loads(text)["errcode"] == 40097, text
        status, text = raw_get(worker, f"/cgi-bin//user/info?access_token={token}&openid=o")
        assert status == 200 and json.loads(text)["errcode"] == 40097, text
        assert fake.api_requests == []

    def test_a_wrong_key_in_keyed_mode_is_refused(self, worker, fake):
        assert_error(worker.request("GET", "/gateway/cgi-bin/user/info?openid=o",
                                    key="wrong-key-0123456789abcdef"), 401, "unauthorized")
        assert fake.api_requests == []

    def test_pass_through_login_checks_the_appid_and_the_keys_scope(self, worker, fake):
        fake.login_codes.add("code-9")
        unknown = worker.request(
            "GET", f"/sns/jscode2session?appid=wxunknown0000000&secret={CLIENT_KEY}"
            "&js_code=code-9&grant_type=authorization_code", key=None)
        assert unknown.json["errcode"] == 40013
        scoped = worker.request(
            "GET", f"/sns/jscode2session?appid={STABLE[0]}&secret={SCOPED_KEY}"
            "&js_code=code-9&grant_type=authorization_code", key=None)
        assert scoped.json["errcode"] == 40125, "the key is scoped to another account"
        assert fake.api_requests == [] and "code-9" in fake.login_codes

    def test_a_users_oauth_call_is_not_passed_through_without_a_key(self, worker, fake):
        reply = worker.request("GET", "/sns/userinfo?access_token=USER-x&openid=o", key=None)
        assert reply.status == 200 and reply.json["errcode"] == 40097
        assert "/gateway/" in reply.json["errmsg"]
        assert fake.api_requests == []

    def test_dot_segments_are_resolved_before_the_worker_sees_them(self, worker, fake):
        # The runtime's URL parser resolves `..` (encoded or not): what is left is checked
        # like any path, here one outside WeChat's API families.
        status, text = raw_get(worker, "/gateway/cgi-bin/%2e%2e/admin",
                               {"Authorization": f"Bearer {CLIENT_KEY}"})
        assert status == 404 and json.loads(text)["error"] == "not_found", text
        assert fake.api_requests == []

    def test_only_wechats_api_families_are_forwarded(self, worker, fake):
        assert_error(worker.request("GET", "/gateway/admin/x"), 404, "not_found")
        assert_error(worker.request("GET", "/somewhere/else"), 404, "not_found")
        assert fake.api_requests == []

    @pytest.mark.parametrize("token", ["", "FAKE-not-issued-here", CLIENT_KEY])
    def test_a_pass_through_call_needs_a_token_this_server_issued(self, worker, fake, token):
        reply = worker.request("GET", f"/cgi-bin/user/info?access_token={token}&openid=o1",
                               key=None)
        assert reply.status == 200
        assert reply.json["errcode"] == 40001
        assert fake.api_requests == [], "nothing was forwarded: no open proxy"

    def test_a_login_call_needs_a_client_key_as_its_secret(self, worker, fake):
        fake.login_codes.add("code-1")
        reply = worker.request(
            "GET", f"/sns/jscode2session?appid={STABLE[0]}&secret=wrong-key-0123456789"
            "&js_code=code-1&grant_type=authorization_code", key=None)
        assert reply.json["errcode"] == 40125
        assert fake.api_requests == [] and "code-1" in fake.login_codes


class TestForwarding:
    def test_a_keyed_call_gets_the_current_token_and_only_allowed_headers(self, worker, fake):
        reply = worker.request(
            "GET", "/gateway/cgi-bin/user/info?openid=o1&account=second",
            headers={"Cookie": "session=1", "X-Forwarded-For": "198.51.100.7",
                     "CF-Connecting-IP": "198.51.100.7", "Accept": "application/json"})
        assert reply.status == 200, reply.text
        assert reply.json == {"subscribe": 1, "openid": "o1", "nickname": "fake user"}
        [call] = fake.api_requests
        assert call["path"] == "/cgi-bin/user/info"
        assert_sent_for(fake, SECOND[0])
        # `CF-Worker` is the platform's own mark on every subrequest, not the client's.
        assert set(call["headers"]) == {"host", "accept", "cf-worker"}, call["headers"]
        assert call["headers"]["accept"] == "application/json"
        assert "198.51.100.7" not in json.dumps(call["headers"])
        token = worker.request("GET", "/token?account=second").json["access_token"]
        assert fake.is_valid(token) and fake.api_rejected == []

    def test_a_keyed_post_carries_its_json_body(self, worker, fake):
        message = {"touser": "o1", "msgtype": "text", "text": {"content": "你好"}}
        reply = worker.request("POST", "/gateway/cgi-bin/message/custom/send",
                               body=json.dumps(message, ensure_ascii=False))
        assert reply.status == 200 and reply.json == {"errcode": 0, "errmsg": "ok"}
        assert fake.messages == [message]
        assert_sent_for(fake, fake.appid)  # the default account

    def test_a_pass_through_call_with_an_issued_token(self, worker, fake):
        token = worker.request("GET", "/token?account=second").json["access_token"]
        reply = worker.request("GET", f"/cgi-bin/user/info?access_token={token}&openid=o2",
                               key=None)
        assert reply.status == 200 and reply.json["openid"] == "o2"
        assert len(fake.api_requests) == 1
        assert_sent_for(fake, SECOND[0])

    def test_login_calls_get_the_appid_and_secret_injected_and_are_sent_once(self, worker, fake):
        fake.login_codes.update({"code-2", "code-3"})
        keyed = worker.request(
            "GET", "/gateway/sns/jscode2session?account=shop&js_code=code-2"
            "&grant_type=authorization_code")
        assert keyed.status == 200 and keyed.json["openid"] == "openid-code-2", keyed.text
        passed = worker.request(
            "GET", f"/sns/jscode2session?appid={STABLE[0]}&secret={CLIENT_KEY}&js_code=code-3"
            "&grant_type=authorization_code", key=None)
        assert passed.json["openid"] == "openid-code-3"
        used_again = worker.request(
            "GET", "/gateway/sns/jscode2session?account=shop&js_code=code-2"
            "&grant_type=authorization_code")
        assert used_again.json["errcode"] == 40029
        assert len(fake.api_requests) == 3, "never retried"


class TestWebOAuth:
    """Web OAuth (网页授权) through the keyed gateway: the code exchange gets the appsecret;
    the user's own token and refresh token pass as sent, and their refusals heal nothing."""

    def test_the_code_exchange_gets_the_secret_and_the_users_token_stays_the_users(
            self, worker, fake):
        fake.login_codes.add("oauth-code-1")
        exchanged = worker.request(
            "GET", "/gateway/sns/oauth2/access_token?account=shop&code=oauth-code-1"
            "&grant_type=authorization_code&secret=client-sent-secret-ignored")
        assert exchanged.status == 200 and exchanged.json["openid"] == "openid-oauth-code-1", \
            exchanged.text
        user_token, refresh = exchanged.json["access_token"], exchanged.json["refresh_token"]
        info = worker.request(
            "GET", f"/gateway/sns/userinfo?account=shop&access_token={user_token}"
            "&openid=openid-oauth-code-1&lang=zh_CN")
        assert info.json == {"openid": "openid-oauth-code-1", "nickname": "web user"}
        renewed = worker.request(
            "GET", f"/gateway/sns/oauth2/refresh_token?account=shop&refresh_token={refresh}"
            "&grant_type=refresh_token")
        assert renewed.json["openid"] == "openid-oauth-code-1", renewed.text
        # /sns/auth checks the user's own token: it goes as the caller sent it, no appid added.
        checked = worker.request(
            "GET", f"/gateway/sns/auth?account=shop&access_token={user_token}"
            "&openid=openid-oauth-code-1")
        assert checked.json == {"errcode": 0, "errmsg": "ok"}, checked.text
        call = fake.api_requests[-1]
        assert call["path"] == "/sns/auth" and "appid" not in call["query"]
        assert call["token_appid"] is None, "the user's token, not the account's"
        passed = worker.request(
            "GET", f"/sns/auth?access_token={user_token}&openid=openid-oauth-code-1", key=None)
        assert passed.json["errcode"] == 40097, "refused: nothing of this server's to check"
        assert len(fake.api_requests) == 4

    def test_a_refused_user_token_heals_nothing(self, worker, fake):
        before = fake.calls_for(STABLE[0])
        worker.request("GET", "/token?account=shop")
        warmed = fake.calls_for(STABLE[0])
        replies = [worker.request(
            "GET", "/gateway/sns/userinfo?account=shop&access_token=USER-forged&openid=o")
            for _ in range(3)]
        assert all(r.json["errcode"] == 40001 for r in replies)
        assert len(fake.api_requests) == 3, "each sent once, never retried"
        assert fake.calls_for(STABLE[0]) == warmed >= before, "the account's token untouched"


def test_a_pass_through_call_strips_the_clients_headers(worker, fake):
    token = worker.request("GET", "/token?account=second").json["access_token"]
    reply = worker.request(
        "GET", f"/cgi-bin/user/info?access_token={token}&openid=o8", key=None,
        headers={"Cookie": "session=1", "X-Forwarded-For": "198.51.100.9",
                 "Authorization": "Bearer whatever-0123456789", "X-Custom": "1"})
    assert reply.json["openid"] == "o8"
    [call] = fake.api_requests
    assert set(call["headers"]) <= {"host", "accept", "cf-worker"}, call["headers"]
    assert_sent_for(fake, SECOND[0])


def test_an_answer_passes_back_no_header_but_what_its_body_is(worker, fake):
    fake.answer_headers = {"Set-Cookie": "sid=wechat", "X-Extra": "1", "Server": "fake",
                           "Access-Control-Allow-Origin": "*", "Cache-Control": "public"}
    token = worker.request("GET", "/token?account=second").json["access_token"]
    keyed = raw_call(worker, "GET", "/gateway/cgi-bin/user/info?openid=o8&account=second")
    status, passed_headers, _ = keyed
    passed = worker.request("GET", f"/cgi-bin/user/info?access_token={token}&openid=o8",
                            key=None)
    transport = {"content-length", "transfer-encoding", "connection", "keep-alive", "date"}
    allowed = {"content-type", "content-disposition", "x-content-type-options",
               "content-security-policy", "cache-control"}
    for headers in (passed_headers, passed.headers):
        assert set(headers) - transport <= allowed, headers
        assert headers["cache-control"] == "no-store", "the edge's own, not WeChat's"
        assert headers["content-type"].startswith("application/json")
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"] == "sandbox"
    assert status == 200 and passed.status == 200


def test_a_head_request_is_sent_upstream_as_a_get(worker, fake):
    status, headers, body = raw_call(worker, "HEAD", "/gateway/cgi-bin/user/info?openid=o9")
    assert status == 200 and body == b""
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "sandbox"
    assert [r["method"] for r in fake.api_requests] == ["GET"]


def test_a_rejected_token_is_healed_once_for_a_concurrent_batch(worker, fake):
    token = worker.request("GET", "/token?account=second").json["access_token"]
    before = fake.calls_for(SECOND[0])  # a first fetch, when this test runs alone
    fake.revoked.add(token)  # WeChat stopped accepting it behind everyone's back
    fake.latency_ms = 200
    replies = burst(100, lambda: worker.request(
        "GET", "/gateway/cgi-bin/user/info?openid=o3&account=second"))
    assert all(r.status == 200 and r.json.get("openid") == "o3" for r in replies), \
        [r.text for r in replies if r.status != 200 or "openid" not in r.json][:3]
    assert fake.calls_for(SECOND[0]) == before + 1, "one token refresh for all of them"
    assert_sent_for(fake, SECOND[0])
    fresh = worker.request("GET", "/token?account=second").json["access_token"]
    assert fresh != token and fake.is_valid(fresh)
    # The calls' log lines can reach the log after their answers: wait for a retried one.
    assert wait_for(lambda: any(e["retried"] for e in worker.events("gateway_call")
                                if e["path"] == "/cgi-bin/user/info"), 10)


@pytest.mark.parametrize("errcode", [42001, 40014])
def test_a_token_wechat_calls_expired_or_invalid_is_healed_as_40001_is(worker, fake, errcode):
    token = worker.request("GET", "/token?account=second").json["access_token"]
    before = fake.calls_for(SECOND[0])
    fake.rejection_errcode = errcode
    fake.revoked.add(token)
    keyed = worker.request("GET", "/gateway/cgi-bin/user/info?openid=o4&account=second")
    assert keyed.status == 200 and keyed.json.get("openid") == "o4", keyed.text
    fresh = worker.request("GET", "/token?account=second").json["access_token"]
    assert fresh != token and fake.is_valid(fresh)
    fake.revoked.add(fresh)
    passed = worker.request("GET", f"/cgi-bin/user/info?access_token={fresh}&openid=o5",
                            key=None)
    assert passed.json.get("openid") == "o5", passed.text
    assert fake.calls_for(SECOND[0]) == before + 2, "one heal each"


@pytest.mark.parametrize("interval", ["0", None])
def test_two_hundred_pass_through_calls_across_a_revoked_token_are_all_answered(
        start_worker, fake, interval):
    # At MIN_REFRESH_INTERVAL_SECS 0 and at its default (60): a token WeChat rejects right
    # after it was fetched is healed all the same.
    extra = {"MIN_REFRESH_INTERVAL_SECS": interval} if interval else {}
    worker = start_worker(**several(fake, **extra))
    token = worker.request("GET", "/token?account=second").json["access_token"]
    before = fake.calls_for(SECOND[0])
    fake.revoked.add(token)
    fake.latency_ms = 100
    replies = burst(200, lambda: worker.request(
        "GET", f"/cgi-bin/user/info?access_token={token}&openid=o9", key=None, timeout=60))
    assert len(replies) == 200
    assert all(r.status == 200 and r.json.get("openid") == "o9" for r in replies), \
        [r.text for r in replies if r.status != 200 or "openid" not in r.json][:3]
    assert fake.calls_for(SECOND[0]) == before + 1, "one heal for all of them"
    assert_sent_for(fake, SECOND[0])


def test_gateway_log_lines_name_the_call_never_its_credentials(worker, fake):
    seen = len(worker.events("gateway_call"))
    worker.request("GET", "/gateway/cgi-bin/user/info?openid=o4")
    # Its line may reach the log after its answer (and after an earlier test's lines).
    event = next_gateway_event(worker, seen, "/cgi-bin/user/info", lambda e: e["mode"] == "keyed")
    assert set(event) >= {"account", "method", "path", "mode", "status", "errcode",
                          "retried", "duration_ms"}
    assert event["path"] == "/cgi-bin/user/info" and event["mode"] == "keyed"
    log = worker.log()
    assert not re.search(r"access_token=|js_code=|secret=|code=|refresh_token=", log)
    for value in [*fake.login_codes, *fake.user_tokens, *fake.user_refresh]:
        assert value not in log


def test_wecom_sdks_get_their_token_in_wecoms_shape(worker, fake):
    for corpid in ("corp-app", CORP[0]):
        reply = worker.request(
            "GET", f"/cgi-bin/gettoken?corpid={corpid}&corpsecret={CLIENT_KEY}", key=None)
        assert reply.status == 200
        answer = reply.json
        assert (answer["errcode"], answer["errmsg"]) == (0, "ok")
        assert set(answer) == {"errcode", "errmsg", "access_token", "expires_in"}
        served = worker.request("GET", "/token?account=corp-app").json["access_token"]
        assert answer["access_token"] == served
    wrong = worker.request(
        "GET", "/cgi-bin/gettoken?corpid=corp-app&corpsecret=wrong-key-0123456789", key=None)
    assert wrong.json["errcode"] == 40001 and "access_token" not in wrong.json
    # A keyed call for the WeCom app goes to WECOM_API_BASE with the app's own token.
    keyed = worker.request("GET", "/gateway/cgi-bin/user/info?account=corp-app&openid=w1")
    assert keyed.json.get("openid") == "w1", keyed.text
    assert_sent_for(fake, CORP[0])


EGRESS_KEY = "fake-secret-egress-0123456789"  # the log checks look for every fake-secret-…


def test_every_call_to_wechat_carries_the_relay_key(start_worker, fake):
    fake.egress_key = EGRESS_KEY  # the fake answers 403 without it, as the relay does
    worker = start_worker(WECHAT_EGRESS_KEY=EGRESS_KEY)
    assert worker.get_token().status == 200
    assert worker.request("GET", "/ticket?type=jsapi").status == 200
    reply = worker.request("GET", "/gateway/cgi-bin/user/info?openid=o5")
    assert reply.status == 200 and reply.json["openid"] == "o5"
    assert fake.egress_refused == 0
    assert fake.calls == 1 and len(fake.api_requests) == 1
    assert_sent_for(fake, fake.appid)


def test_a_relay_refusal_names_the_relay_key(start_worker, fake):
    fake.egress_key = EGRESS_KEY
    worker = start_worker(WECHAT_EGRESS_KEY="fake-secret-egress-wrong-0123")
    body = assert_error(worker.get_token(), 502, "egress_refused")
    assert "WECHAT_EGRESS_KEY" in body["message"]
    assert fake.egress_refused == 1, "not retried: a wrong key stays wrong"


def test_a_403_of_wechats_is_not_taken_for_the_relays(start_worker, fake):
    fake.egress_key = EGRESS_KEY
    worker = start_worker(WECHAT_EGRESS_KEY=EGRESS_KEY)
    status, _, body = raw_call(worker, "GET", "/gateway/cgi-bin/denied")
    assert status == 403 and json.loads(body)["errcode"] == 48001, body
    assert fake.egress_refused == 0


def test_wechatpy_calls_apis_through_the_pass_through_and_never_sees_a_rotation(worker, fake):
    from test_compat import sdk_client

    client = sdk_client(worker, SECOND[0])  # its API base is the worker; its secret a key
    assert client.user.get("o6")["openid"] == "o6"
    client.message.send_text("o6", "hello from wechatpy")
    assert fake.messages[-1]["text"]["content"] == "hello from wechatpy"
    # WeChat stops accepting the token behind the SDK's back: the edge heals it, once.
    fake.revoked.add(client.access_token)
    before = fake.calls_for(SECOND[0])
    fake.latency_ms = 100
    openids = burst(10, lambda: client.user.get("o7")["openid"])
    assert openids == ["o7"] * 10
    assert fake.calls_for(SECOND[0]) == before + 1
    assert_sent_for(fake, SECOND[0])


class TestStreaming:
    """Bodies over 1 MiB stream upstream, unkept; answers that are not small JSON or text
    stream back, unread. Both arrive byte for byte."""

    BIG = os.urandom(3 * 1024 * 1024 + 17)

    def test_wechatpy_uploads_and_downloads_media_through_the_pass_through(self, worker, fake):
        from test_compat import sdk_client

        client = sdk_client(worker, SECOND[0])
        uploaded = client.media.upload("image", io.BytesIO(self.BIG))
        media_id = uploaded["media_id"]
        assert fake.media[media_id] == self.BIG
        # Handed on untouched, its declared length goes with it (WeChat wants one).
        [upload] = fake.api_requests
        assert int(upload["headers"]["content-length"]) == upload["body_bytes"] > len(self.BIG)
        assert_sent_for(fake, SECOND[0])
        seen = len(worker.events("gateway_call"))
        download = client.media.download(media_id)
        assert download.status_code == 200
        assert download.headers["Content-Type"] == "image/jpeg"
        assert f'filename="{media_id}.jpg"' in download.headers["Content-Disposition"]
        assert hashlib.sha256(download.content).digest() == hashlib.sha256(self.BIG).digest()
        event = next_gateway_event(worker, seen, "/cgi-bin/media/get")
        assert event["errcode"] is None

    def test_a_small_upload_is_kept_and_sent_again_after_a_rotation(self, worker, fake):
        token = worker.request("GET", "/token?account=second").json["access_token"]
        fake.revoked.add(token)
        small = os.urandom(200 * 1024)
        body, headers = multipart("media", "small.jpg", small)
        seen = len(worker.events("gateway_call"))
        status, _, answer = raw_call(
            worker, "POST", "/gateway/cgi-bin/media/upload?account=second&type=image",
            body, headers)
        assert status == 200, answer
        assert fake.media[json.loads(answer)["media_id"]] == small
        assert [r["path"] for r in fake.api_requests] == ["/cgi-bin/media/upload"] * 2
        assert_sent_for(fake, SECOND[0])
        # An earlier test's unretried upload line may come late: this call's is the retried one.
        assert next_gateway_event(worker, seen, "/cgi-bin/media/upload",
                                  lambda e: e["retried"] is True)["account"] == "second"

    def test_a_chunked_body_over_the_limit_streams_on_unkept(self, worker, fake):
        token = worker.request("GET", "/token?account=second").json["access_token"]
        fake.revoked.add(token)
        body, headers = multipart("media", "big.jpg", self.BIG)
        path = "/gateway/cgi-bin/media/upload?account=second&type=image"
        status, _, answer = raw_call(worker, "POST", path, body, headers, chunked=True)
        assert status == 200 and json.loads(answer)["errcode"] == 40001, answer
        assert len(fake.api_requests) == 1, "streamed, so not sent again"
        status, _, answer = raw_call(worker, "POST", path, body, headers, chunked=True)
        assert status == 200, answer
        assert fake.media[json.loads(answer)["media_id"]] == self.BIG
        assert "content-length" not in fake.api_requests[-1]["headers"]

    def test_a_streamed_body_may_take_longer_than_the_upstream_budget(self, worker, fake):
        # UPSTREAM_TIMEOUT_MS is 2.5 s here; a body that streams has 60 s (WeChat answers only
        # once it has all of it, at the client's pace): this one takes about 5 s to arrive.
        body, headers = multipart("media", "slow.jpg", self.BIG)
        pieces = [body[i:i + 262144] for i in range(0, len(body), 262144)]

        def slowly():
            for piece in pieces:
                time.sleep(5.0 / len(pieces))
                yield piece

        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=90)
        try:
            conn.request("POST", "/gateway/cgi-bin/media/upload?account=second&type=image",
                         body=slowly(), encode_chunked=True,
                         headers={"Authorization": f"Bearer {CLIENT_KEY}", **headers})
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        assert time.monotonic() - started > 4.5
        assert answer.status == 200, data
        assert fake.media[json.loads(data)["media_id"]] == self.BIG

    def test_a_streamed_body_is_not_sent_again_but_the_token_is_healed(self, worker, fake):
        token = worker.request("GET", "/token?account=second").json["access_token"]
        fake.revoked.add(token)
        before = fake.calls_for(SECOND[0])
        body, headers = multipart("media", "big.jpg", self.BIG)
        path = "/gateway/cgi-bin/media/upload?account=second&type=image"
        seen = len(worker.events("gateway_call"))
        status, _, answer = raw_call(worker, "POST", path, body, headers)
        assert status == 200 and json.loads(answer)["errcode"] == 40001, answer
        assert len(fake.api_requests) == 1, "a streamed body cannot be sent twice"
        assert fake.calls_for(SECOND[0]) == before + 1, "but the token is replaced for all"
        # The previous test's upload (answered without an errcode) may log late: this one's
        # line is the one with WeChat's 40001.
        event = next_gateway_event(worker, seen, "/cgi-bin/media/upload",
                                   lambda e: e["errcode"] == 40001)
        assert event["retried"] is False
        status, _, answer = raw_call(worker, "POST", path, body, headers)
        assert status == 200 and "media_id" in json.loads(answer), answer

    def test_answers_without_a_length_are_read_for_an_errcode_up_to_the_limit(
            self, worker, fake):
        fake.chunked_answers = True
        token = worker.request("GET", "/token?account=second").json["access_token"]
        fake.revoked.add(token)  # a chunked 40001 is read and healed
        reply = worker.request("GET", "/gateway/cgi-bin/user/info?openid=o8&account=second")
        assert reply.status == 200 and reply.json["openid"] == "o8", reply.text
        assert len(fake.api_requests) == 2
        status, _, answer = raw_call(worker, "GET", "/gateway/cgi-bin/user/get?account=second")
        assert status == 200 and json.loads(answer)["count"] == fake.followers
        assert len(answer) > 64 * 1024, "what was read is replayed ahead of the rest"

    def test_a_large_json_answer_passes_back_whole_and_unread(self, worker, fake):
        seen = len(worker.events("gateway_call"))
        path = "/gateway/cgi-bin/user/get?account=second"
        status, headers, answer = raw_call(worker, "GET", path)
        assert status == 200 and headers["content-type"].startswith("application/json")
        listing = json.loads(answer)
        assert len(answer) > 64 * 1024 and listing["count"] == fake.followers
        assert next_gateway_event(worker, seen, "/cgi-bin/user/get")["errcode"] is None


class TestBudget:
    """A call is answered within UPSTREAM_TIMEOUT_MS (2.5 s here) when WeChat stops answering,
    before its headers or half-way through a body the gateway reads; an answer handed on as
    it comes is not cut off by that budget."""

    @pytest.mark.parametrize("stall", ["headers", "body"])
    def test_an_answer_that_stops_coming_is_answered_within_the_budget(
            self, worker, fake, stall):
        token = worker.request("GET", "/token?account=second").json["access_token"]
        fake.api_stall, fake.stall_secs = stall, 8
        seen = len(worker.events("gateway_call"))
        started = time.monotonic()
        keyed = worker.request("GET", "/gateway/cgi-bin/user/info?openid=o1&account=second")
        keyed_secs = time.monotonic() - started
        assert_error(keyed, 504, "upstream_timeout")
        assert 2.4 < keyed_secs < 6, keyed_secs
        line = next_gateway_event(worker, seen, "/cgi-bin/user/info")
        assert line["edge_error"] == "upstream_timeout" and line["status"] == 504
        started = time.monotonic()
        passed = worker.request(
            "GET", f"/cgi-bin/user/info?openid=o2&access_token={token}", key=None)
        passed_secs = time.monotonic() - started
        assert passed.status == 200 and passed.json["errcode"] == -1, passed.text
        assert 2.4 < passed_secs < 6, passed_secs
        assert len(fake.api_requests) == 2, "each call went out once"

    def test_a_download_handed_on_is_not_cut_off_by_the_budget(self, worker, fake):
        picture = os.urandom(300 * 1024)
        fake.media["budget-picture"] = picture
        fake.api_stall, fake.stall_secs = "body", 4
        started = time.monotonic()
        status, headers, data = raw_call(
            worker, "GET", "/gateway/cgi-bin/media/get?account=second&media_id=budget-picture")
        assert time.monotonic() - started > 3.5, "the second half came after the budget"
        assert status == 200 and headers["content-type"] == "image/jpeg"
        assert data == picture
