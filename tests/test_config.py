"""Configuration errors: clear, naming the variable, never its value; fail closed."""

from harness import CLIENT_KEY, wait_for
from test_api import assert_error


def test_without_client_keys_every_token_request_is_refused(start_worker, fake):
    worker = start_worker(CLIENT_KEYS="")
    # Every caller alike, with or without a key: nobody outside learns the setup's state;
    # the log names the variable.
    for reply in (worker.get_token(), worker.refresh(), worker.get_token(key="anything-at-all-0123"),
                  worker.get_token(key=None)):
        body = assert_error(reply, 401, "unauthorized")
        assert "CLIENT_KEYS" not in body["message"] and "log" in body["message"]
    assert wait_for(lambda: any("CLIENT_KEYS" in e["message"]
                                for e in worker.events("config_error")), 5)
    assert worker.request("GET", "/healthz", key=None).json == {"ok": True}
    assert fake.calls == 0


def test_a_missing_secret_is_named(start_worker, fake):
    worker = start_worker(WECHAT_APPSECRET="")
    body = assert_error(worker.get_token(), 500, "config_error")
    assert "WECHAT_APPSECRET" in body["message"]
    # Authentication comes first: a caller without a key learns nothing about the setup.
    assert_error(worker.get_token(key=None), 401, "unauthorized")
    assert fake.calls == 0


def test_invalid_numbers_are_named_not_echoed(start_worker, fake):
    worker = start_worker(REFRESH_MARGIN_SECS="not-a-number")
    for reply in (worker.get_token(), worker.refresh()):
        body = assert_error(reply, 500, "config_error")
        assert "REFRESH_MARGIN_SECS" in body["message"]
        assert "not-a-number" not in reply.text
    event = worker.run_cron()[-1]
    assert event["outcome"] == "config_error" and "REFRESH_MARGIN_SECS" in event["message"]
    assert fake.calls == 0


def test_a_wrong_secret_is_reported_without_echoing_it(start_worker, fake):
    wrong = "fake-secret-wrong-0123456789"
    worker = start_worker(WECHAT_APPSECRET=wrong, MIN_REFRESH_INTERVAL_SECS="0")
    reply = worker.get_token()
    body = assert_error(reply, 502, "wechat_error")
    assert body["wechat_errcode"] == 40125
    assert "WECHAT_APPSECRET" in body["message"]
    assert wrong not in reply.text
    assert fake.calls == 1


def test_client_keys_may_list_several(start_worker, fake):
    worker = start_worker(CLIENT_KEYS=f" other-key-0123456789abcdef , {CLIENT_KEY} ")
    assert worker.get_token(key="other-key-0123456789abcdef").status == 200
    assert worker.get_token().status == 200
    assert fake.calls == 1


def test_a_test_switch_is_refused_unless_every_origin_is_loopback(start_worker, fake):
    # A fault switch left in a deployment fails loudly on every route, naming it; nothing is
    # sent anywhere (the configuration is refused before any call).
    worker = start_worker(TEST_NO_DUE_ALARMS="1", WECHAT_API_BASE="https://api.weixin.qq.com")
    for reply in (worker.get_token(), worker.request("GET", "/status"),
                  worker.request("GET", "/gateway/cgi-bin/user/info?openid=o")):
        body = assert_error(reply, 500, "config_error")
        assert "TEST_NO_DUE_ALARMS" in body["message"]
    assert wait_for(lambda: any(e.get("variable") == "TEST_NO_DUE_ALARMS"
                                for e in worker.events("config_error")), 10), "the log says so"
    assert fake.calls == 0


def test_plain_http_is_refused_unless_the_origin_is_loopback(start_worker, fake):
    worker = start_worker(WECOM_API_BASE="http://wecom-relay.example.com/wecom")
    body = assert_error(worker.get_token(), 500, "config_error")
    assert "WECOM_API_BASE" in body["message"] and "https" in body["message"]
    assert fake.calls == 0
