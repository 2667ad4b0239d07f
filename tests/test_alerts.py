"""Alerts: a fake webhook receiver on 127.0.0.1 gets exactly the expected messages for each
condition (start, no repeat within the window, a repeat after it, recovery), in each service's
payload shape, holding no secret; alerts that start together arrive as one digest; a failing
webhook is tried again after the window with what joined it, logged, and never slows a token
read; DingTalk's and Feishu's signed robots get signatures they accept; an object that cannot
load alerts and comes back. The outbox's pace is shortened here (TEST_ALERT_PACE: gathering
1 s, window 4 s, where production waits 10 s and 60 s)."""

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import wechat_push
from fake_wechat import FAKE_EGRESS_IP
from harness import wait_for
from test_api import assert_error
from test_platform import component_vars, push


class Receiver:
    """A webhook: records every JSON body posted to it; answers `status` after `delay`. With
    `check` (a function of the path and the body), answers what it returns instead: a signed
    robot's own refusal when the signature is wrong."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        self.delay = 0.0
        self.answer = b"ok"
        self.check = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append({"path": self.path, "body": json.loads(body),
                                          "type": self.headers.get("Content-Type")})
                time.sleep(receiver.delay)
                answer = receiver.answer
                if receiver.check:
                    answer = json.dumps(receiver.check(self.path, json.loads(body))).encode()
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self):
        return [r["body"] for r in self.received]

    def states(self):
        return [(b["condition"], b["state"]) for b in self.bodies()]

    def wait(self, count, timeout=15):
        assert wait_for(lambda: len(self.received) >= count, timeout), self.states()
        return self.bodies()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def alert_vars(receiver, **overrides):
    return {"ALERT_WEBHOOK_URL": receiver.url, "ALERT_FORMAT": "json",
            "MIN_REFRESH_INTERVAL_SECS": "0", "TEST_ALERT_PACE": "1,4", **overrides}


def assert_no_secret(receiver, fake):
    text = json.dumps(receiver.bodies())
    for secret in [fake.secret, *fake.all_issued, *fake.platform.all_secrets,
                   fake.platform.secret]:
        assert secret not in text


def test_an_ip_refusal_alerts_once_and_recovers_once(start_worker, fake, receiver):
    fake.mode = "ip_not_whitelisted"
    worker = start_worker(**alert_vars(receiver, ALERT_AFTER_SECS="3"))
    assert worker.get_token().status == 502
    receiver.wait(1)
    assert receiver.states() == [("no_valid_token", "started")], \
        "an IP refusal younger than ALERT_AFTER_SECS is no alert yet"
    bodies = receiver.wait(2)
    assert sorted(receiver.states()) == [("ip_refused", "started"),
                                         ("no_valid_token", "started")]
    ip_alert = next(b for b in bodies if b["condition"] == "ip_refused")
    assert ip_alert["account"] == fake.appid and ip_alert["errcode"] == 40164
    assert "Two fixes" in ip_alert["text"] and FAKE_EGRESS_IP in ip_alert["text"]
    assert fake.appid in ip_alert["text"]
    worker.get_token()  # still refused, within the repeat window: no new message
    time.sleep(2)
    assert len(receiver.received) == 2
    fake.mode = "ok"
    assert worker.get_token().status == 200
    receiver.wait(4)
    assert sorted(receiver.states()[2:]) == [("ip_refused", "recovered"),
                                             ("no_valid_token", "recovered")]
    time.sleep(1)
    assert len(receiver.received) == 4
    assert_no_secret(receiver, fake)


def test_an_alert_repeats_after_its_window(start_worker, fake, receiver):
    # A repeat every few seconds would be an alarm and a message per account that often.
    worker = start_worker(**alert_vars(receiver, ALERT_REPEAT_SECS="59"))
    body = assert_error(worker.get_token(), 500, "config_error")
    assert "ALERT_REPEAT_SECS" in body["message"]
    fake.mode = "busy"
    worker = start_worker(**alert_vars(receiver, ALERT_REPEAT_SECS="60"))
    worker.get_token()
    receiver.wait(1)
    assert receiver.states() == [("no_valid_token", "started")]
    time.sleep(60.5)
    worker.get_token()
    receiver.wait(2)
    assert receiver.states()[1] == ("no_valid_token", "repeated")
    assert receiver.bodies()[1]["since"] == receiver.bodies()[0]["since"]


def test_refreshes_failing_while_a_token_is_served(start_worker, fake, receiver):
    worker = start_worker(**alert_vars(receiver, ALERT_AFTER_SECS="2"))
    token = worker.get_token().json["access_token"]
    fake.mode = "busy"
    body = json.dumps({"stale_token": token})
    assert worker.request("POST", "/token/refresh", body=body).status == 502
    time.sleep(1)
    assert receiver.received == [], "a failure younger than ALERT_AFTER_SECS is no alert"
    time.sleep(1.5)
    worker.request("POST", "/token/refresh", body=body)
    bodies = receiver.wait(1)
    assert receiver.states() == [("refresh_failing", "started")]
    assert bodies[0]["errcode"] == -1 and "What to do" in bodies[0]["text"]
    assert worker.get_token().status == 200, "the token is still served"
    fake.mode = "ok"
    assert worker.request("POST", "/token/refresh", body=body).status == 200
    receiver.wait(2)
    assert receiver.states()[1] == ("refresh_failing", "recovered")


def test_a_quota_pause_alerts_exactly_once_and_recovers_after_a_reset(start_worker, fake,
                                                                     receiver):
    from test_admin import ADMIN_KEY

    fake.mode = "quota"
    worker = start_worker(**alert_vars(receiver, ADMIN_KEYS=ADMIN_KEY))
    assert assert_error(worker.get_token(), 502, "wechat_error")["wechat_errcode"] == 45009
    receiver.wait(2)
    assert sorted(receiver.states()) == [("no_valid_token", "started"),
                                         ("quota_paused", "started")]
    advice = next(b for b in receiver.bodies() if b["condition"] == "quota_paused")["text"]
    assert "/reset" in advice and "What to do" in advice
    worker.get_token()
    time.sleep(2)
    assert len(receiver.received) == 2, "no repeat within the window"
    fake.mode = "ok"  # WeChat's clear_quota
    reset = worker.request("POST", f"/admin/accounts/{fake.appid}/reset", key=ADMIN_KEY)
    assert reset.status == 200
    assert worker.get_token().status == 200
    receiver.wait(4)
    assert sorted(receiver.states()[2:]) == [("no_valid_token", "recovered"),
                                             ("quota_paused", "recovered")]
    assert_no_secret(receiver, fake)


def test_refused_credentials_alert_exactly_once(start_worker, fake, receiver):
    worker = start_worker(**alert_vars(receiver, WECHAT_APPSECRET="fake-secret-wrong-0123456789"))
    assert assert_error(worker.get_token(), 502, "wechat_error")["wechat_errcode"] == 40125
    receiver.wait(2)
    assert sorted(receiver.states()) == [("credentials_refused", "started"),
                                         ("no_valid_token", "started")]
    advice = next(b for b in receiver.bodies() if b["condition"] == "credentials_refused")
    assert advice["errcode"] == 40125 and "secret" in advice["text"]
    worker.get_token()
    time.sleep(2)
    assert len(receiver.received) == 2
    assert_no_secret(receiver, fake)


def test_a_healthy_start_and_a_platform_awaiting_its_first_ticket_say_nothing(
        start_worker, fake, receiver):
    worker = start_worker(**{**component_vars(fake), **alert_vars(receiver)})
    assert worker.get_token().status == 200
    assert worker.request("GET", f"/status").status == 200
    assert_error(worker.request("GET", "/component/token"), 503, "no_verify_ticket")
    worker.run_cron(lines=2)
    time.sleep(2)
    assert receiver.received == [], receiver.states()


def test_a_stale_verify_ticket_alerts_and_a_fresh_one_recovers(start_worker, fake, receiver):
    worker = start_worker(**{**component_vars(fake), **alert_vars(receiver)})
    worker.fake_platform = fake.platform
    platform = fake.platform
    old = platform.new_ticket(issued_at=time.time() - 7200)
    message = wechat_push.ticket_message(platform.appid, old,
                                         created_at=int(time.time()) - 7200)
    assert push(worker, message).text == "success"
    receiver.wait(1)
    assert ("verify_ticket_stale", "started") in receiver.states()
    stale = next(b for b in receiver.bodies() if b["condition"] == "verify_ticket_stale")
    assert stale["account"] == platform.appid and "/component/events" in stale["text"]
    fresh = platform.new_ticket()
    assert push(worker, wechat_push.ticket_message(platform.appid, fresh)).text == "success"
    assert wait_for(lambda: ("verify_ticket_stale", "recovered") in receiver.states(), 15)
    assert_no_secret(receiver, fake)


@pytest.mark.parametrize("format_name, shape", [
    ("wecom", lambda b: b["msgtype"] == "text" and "content" in b["text"]),
    ("dingtalk", lambda b: b["msgtype"] == "text" and "content" in b["text"]),
    ("feishu", lambda b: b["msg_type"] == "text" and "text" in b["content"]),
    ("slack", lambda b: set(b) == {"text"}),
])
def test_each_format_is_its_services_payload(start_worker, fake, receiver, format_name, shape):
    fake.mode = "busy"
    worker = start_worker(**alert_vars(receiver, ALERT_FORMAT=format_name))
    worker.get_token()
    [body] = receiver.wait(1)
    assert shape(body), body
    assert receiver.received[0]["type"] == "application/json"
    text = json.dumps(body, ensure_ascii=False)
    assert "[wechat-token-edge] ALERT" in text and fake.appid in text
    assert_no_secret(receiver, fake)


def test_a_webhook_refusing_in_its_body_is_logged(start_worker, fake, receiver):
    receiver.answer = b'{"errcode":93000,"errmsg":"invalid webhook url"}'
    fake.mode = "busy"
    worker = start_worker(**alert_vars(receiver, ALERT_FORMAT="wecom"))
    worker.get_token()
    receiver.wait(2)
    assert wait_for(lambda: worker.events("alert_delivery_failed"), 15)
    assert "93000" in worker.events("alert_delivery_failed")[0]["message"]


def test_a_webhook_silent_for_5_s_is_a_failure_and_feishus_statuscode_a_refusal(
        start_worker, fake, receiver):
    receiver.delay = 12.0  # answers 200, too late
    fake.mode = "busy"
    worker = start_worker(**alert_vars(receiver))
    worker.get_token()
    receiver.wait(1)
    sent = time.monotonic()
    assert wait_for(lambda: worker.events("alert_delivery_failed"), 15)
    assert time.monotonic() - sent < 10, "given up at 5 s, not when the answer came"
    assert "no answer within 5 s" in worker.events("alert_delivery_failed")[0]["message"]
    assert not worker.events("alert_delivered")

    receiver.delay = 0.0
    receiver.answer = b'{"StatusCode":9499,"StatusMessage":"Bad Request"}'
    worker = start_worker(**alert_vars(receiver, ALERT_FORMAT="feishu"))
    worker.get_token()
    assert wait_for(lambda: worker.events("alert_delivery_failed"), 15)
    assert "9499" in worker.events("alert_delivery_failed")[0]["message"]


def test_a_failing_webhook_is_tried_again_after_the_window_logged_and_never_slows_a_read(
        start_worker, fake, receiver):
    receiver.status, receiver.delay = 500, 4.0
    fake.mode = "busy"
    worker = start_worker(**alert_vars(receiver))
    started = time.monotonic()
    assert_error(worker.get_token(), 502, "wechat_error")
    # The webhook takes 4 s (and the outbox gathers 1 s first): a read that waited for it
    # would take 5 s.
    assert time.monotonic() - started < 4.5, "the read did not wait for the webhook"
    receiver.wait(1, timeout=20)
    assert wait_for(lambda: worker.events("alert_delivery_failed"), 15)
    event = worker.events("alert_delivery_failed")[0]
    assert event["webhook_host"].startswith("127.0.0.1") and "hook" not in event["webhook_host"]
    # Not dropped: tried again once the window has passed, and delivered when it answers.
    receiver.status, receiver.delay = 200, 0.0
    receiver.wait(2, timeout=20)
    assert receiver.states() == [("no_valid_token", "started")] * 2
    assert wait_for(lambda: worker.events("alert_delivered"), 15)
    time.sleep(5)
    assert len(receiver.received) == 2, "delivered once: not sent again"
    assert receiver.url not in worker.log()


def test_alerts_that_start_together_arrive_as_one_digest(start_worker, fake, receiver):
    from harness import burst
    from setups import several

    fake.mode = "busy"
    worker = start_worker(**several(fake, **alert_vars(receiver, TEST_ALERT_PACE="3,6")))
    ids = [fake.appid, "second", "corp-app", "shop"]
    names = iter(ids)
    lock = threading.Lock()

    def read():
        with lock:
            name = next(names)
        return worker.request("GET", f"/token?account={name}").status
    assert burst(4, read) == [502] * 4, "WeChat busy for every account"
    [digest] = receiver.wait(1)
    time.sleep(4)
    assert len(receiver.received) == 1, receiver.states()
    assert (digest["condition"], digest["state"], digest["count"]) == \
        ("no_valid_token", "started", 4)
    assert sorted(digest["accounts"]) == sorted(ids)
    assert digest["text"].startswith("[wechat-token-edge] ALERT 4 accounts: no valid token")
    fake.mode = "ok"
    names = iter(ids)
    assert all(status == 200 for status in burst(4, read))
    receiver.wait(2)
    time.sleep(4)
    assert len(receiver.received) == 2
    assert (receiver.bodies()[1]["state"], receiver.bodies()[1]["count"]) == ("recovered", 4)
    assert_no_secret(receiver, fake)


def dingtalk_check(secret):
    """DingTalk's 加签 check: timestamp (ms, within an hour) and sign in the query."""
    def check(path, body):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        timestamp, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
        expected = base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                                             hashlib.sha256).digest()).decode()
        fresh = timestamp.isdigit() and abs(time.time() * 1000 - int(timestamp)) < 3600_000
        if fresh and hmac.compare_digest(sign, expected) and query.get("access_token") == ["t"]:
            return {"errcode": 0, "errmsg": "ok"}
        return {"errcode": 310000, "errmsg": "sign not match"}
    return check


def feishu_check(secret):
    """Feishu's 签名校验: timestamp (s, within an hour) and sign in the JSON body."""
    def check(path, body):
        timestamp = str(body.get("timestamp", ""))
        key = f"{timestamp}\n{secret}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 3600
        if fresh and hmac.compare_digest(str(body.get("sign", "")), expected):
            return {"code": 0, "msg": "success"}
        return {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
    return check


@pytest.mark.parametrize("robot", ["dingtalk", "feishu"])
def test_signed_robots_accept_the_signature_and_refuse_a_wrong_one(start_worker, fake, receiver,
                                                                  robot):
    secret = "SEC0123456789abcdef0123456789abcdef"
    receiver.check = dingtalk_check(secret) if robot == "dingtalk" else feishu_check(secret)
    url = receiver.url + ("?access_token=t" if robot == "dingtalk" else "")
    fake.mode = "busy"
    # DingTalk's secret on the URL (`#secret`), Feishu's in ALERT_WEBHOOK_SECRET.
    hook = {"ALERT_WEBHOOK_URL": f"{url}#{secret}"} if robot == "dingtalk" else \
        {"ALERT_WEBHOOK_URL": url, "ALERT_WEBHOOK_SECRET": secret}
    worker = start_worker(**alert_vars(receiver, ALERT_FORMAT=robot, **hook))
    worker.get_token()
    receiver.wait(1)
    assert wait_for(lambda: worker.events("alert_delivered"), 15)
    assert not worker.events("alert_delivery_failed")
    assert secret not in worker.log() and secret not in json.dumps(receiver.bodies())
    # The wrong secret: the robot refuses, and the log says so.
    wrong = "SECwrong0123456789abcdef0123456789"
    hook = {"ALERT_WEBHOOK_URL": f"{url}#{wrong}"} if robot == "dingtalk" else \
        {"ALERT_WEBHOOK_URL": url, "ALERT_WEBHOOK_SECRET": wrong}
    worker = start_worker(**alert_vars(receiver, ALERT_FORMAT=robot, **hook))
    worker.get_token()
    assert wait_for(lambda: worker.events("alert_delivery_failed"), 15)
    code = "310000" if robot == "dingtalk" else "19021"
    assert code in worker.events("alert_delivery_failed")[0]["message"]


def test_a_generic_receiver_is_judged_by_its_http_status(start_worker, fake, receiver):
    receiver.answer = b'{"code":200,"msg":"success"}'  # PushPlus and others
    fake.mode = "busy"
    worker = start_worker(**alert_vars(receiver))
    worker.get_token()
    receiver.wait(1)
    assert wait_for(lambda: worker.events("alert_delivered"), 15)
    time.sleep(5)
    assert len(receiver.received) == 1 and not worker.events("alert_delivery_failed")


def test_an_object_that_cannot_load_alerts_retries_and_recovers(start_worker, fake, receiver):
    from test_admin import KEY_A, KEY_B, admin_vars, register

    for appid, secret in __import__("test_admin").RUNTIME_APPS:
        fake.add_app(appid, secret)
    worker = start_worker(**admin_vars(fake, **alert_vars(receiver)))
    assert register(worker, "rt1", 1).status == 201
    # The key that sealed rt1's secret is gone: its object cannot load.
    worker.variables["ACCOUNTS_ENCRYPTION_KEY"] = KEY_B
    worker.restart()
    worker.run_cron(lines=2)
    [body] = receiver.wait(1)
    assert (body["account"], body["condition"], body["state"]) == \
        ("rt1", "config_error", "started")
    assert "ACCOUNTS_ENCRYPTION_KEY" in body["text"] and KEY_A not in body["text"]
    # It does not go quiet: its alarm comes back (30 s, then longer), with no new message
    # within the repeat window.
    failed = len(worker.events("load_failed"))
    assert wait_for(lambda: len(worker.events("load_failed")) > failed, 45)
    assert len(receiver.received) == 1
    # The key is back: the next visit loads, and the alert recovers.
    worker.variables["ACCOUNTS_ENCRYPTION_KEY"] = f"{KEY_B},{KEY_A}"
    worker.restart()
    worker.run_cron(lines=2)
    receiver.wait(2)
    assert receiver.states()[1] == ("config_error", "recovered")


def test_every_webhook_gets_the_alert_and_each_is_a_log_line(start_worker, fake, receiver):
    other = Receiver()
    try:
        fake.mode = "busy"
        worker = start_worker(**alert_vars(
            receiver, ALERT_WEBHOOK_URL=f"{receiver.url},{other.url}"))
        worker.get_token()
        receiver.wait(1)
        other.wait(1)
        assert receiver.states() == other.states() == [("no_valid_token", "started")]
        assert wait_for(lambda: worker.events("alert"))
        assert [(e["account"], e["condition"], e["state"]) for e in worker.events("alert")] == \
            [(fake.appid, "no_valid_token", "started")]
    finally:
        other.server.shutdown()
        other.server.server_close()


def test_a_registry_or_an_outbox_that_never_answers_is_waited_for_within_a_bound(
        start_worker, fake, receiver):
    # Both objects stall for two minutes (as one whose KV call hangs); their callers wait
    # 15 s for the registry and 10 s for the outbox, and go on.
    worker = start_worker(**alert_vars(
        receiver, WECHAT_APPSECRET="fake-secret-wrong-0123456789",
        TEST_STALL_OBJECTS="registry:statuses,outbox:enqueue"))
    started = time.monotonic()
    listing = worker.request("GET", "/status", timeout=60)
    waited = time.monotonic() - started
    assert listing.status == 500 and 14 <= waited < 40, (listing.status, waited)
    assert_error(listing, 500, "internal_error")
    assert "the account registry did not answer" in listing.json["message"]
    # The account's own answer does not go through the listing.
    assert worker.request("GET", f"/status?account={fake.appid}").status == 200

    # Refused credentials start alerts; the object hands them to the outbox after its
    # answer, gives up at the bound, and keeps them for the next visit.
    assert_error(worker.get_token(), 502, "wechat_error")
    assert wait_for(lambda: worker.events("alert_enqueue_failed"), 30)
    failed = worker.events("alert_enqueue_failed")[0]
    assert "the alert outbox did not answer" in failed["message"]
    assert receiver.received == []
    # Not recorded as sent: the next visit hands the same alerts again.
    worker.get_token()
    assert wait_for(lambda: len(worker.events("alert_enqueue_failed")) >= 2, 30)
