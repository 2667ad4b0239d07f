"""Alerts: a fake webhook receiver on 127.0.0.1 gets exactly the expected messages for each
condition (start, no repeat within the window, a repeat after it, recovery), in each service's
payload shape, holding no secret; a failing webhook is tried once more, logged, and never slows
a token read."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import wechat_push
from fake_wechat import FAKE_EGRESS_IP
from harness import wait_for
from test_api import assert_error
from test_platform import component_vars, push


class Receiver:
    """A webhook: records every JSON body posted to it; answers `status` after `delay`."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        self.delay = 0.0
        self.answer = b"ok"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append({"path": self.path, "body": json.loads(body),
                                          "type": self.headers.get("Content-Type")})
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

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
            "MIN_REFRESH_INTERVAL_SECS": "0", **overrides}


def assert_no_secret(receiver, fake):
    text = json.dumps(receiver.bodies())
    for secret in [fake.secret, *fake.all_issued, *fake.platform.all_secrets,
                   fake.platform.secret]:
        assert secret not in text


def test_an_ip_refusal_alerts_once_and_recovers_once(start_worker, fake, receiver):
    fake.mode = "ip_not_whitelisted"
    worker = start_worker(**alert_vars(receiver))
    assert worker.get_token().status == 502
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
    fake.mode = "busy"
    worker = start_worker(**alert_vars(receiver, ALERT_REPEAT_SECS="3"))
    worker.get_token()
    receiver.wait(1)
    assert receiver.states() == [("no_valid_token", "started")]
    time.sleep(3.5)
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
    assert worker.get_token().status >= 500
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
    assert worker.get_token().status >= 500
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
    message = wechat_push.ticket_message(platform.appid, old).replace(
        f"<CreateTime>{int(time.time())}", f"<CreateTime>{int(time.time()) - 7200}")
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


def test_a_failing_webhook_is_tried_once_more_logged_and_never_slows_a_read(
        start_worker, fake, receiver):
    receiver.status, receiver.delay = 500, 2.0
    fake.mode = "busy"
    worker = start_worker(**alert_vars(receiver))
    started = time.monotonic()
    assert_error(worker.get_token(), 502, "wechat_error")
    assert time.monotonic() - started < 1.5, "the read did not wait for the webhook"
    receiver.wait(2, timeout=20)
    assert receiver.states() == [("no_valid_token", "started")] * 2, "tried once more"
    assert wait_for(lambda: worker.events("alert_delivery_failed"), 15)
    event = worker.events("alert_delivery_failed")[0]
    assert event["webhook_host"].startswith("127.0.0.1") and "hook" not in event["webhook_host"]
    assert receiver.url not in worker.log()
