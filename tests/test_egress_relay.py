"""The shipped egress relay (deploy/egress/wechat-egress.conf) in real nginx (Debian's package),
on 127.0.0.1, between the worker and the fake WeChat: tokens, tickets, gateway calls and WeCom
go through it with the relay key; anything without the key is refused; its logs keep no secret.

For the test only, the relay listens without TLS, reaches WeChat's names over plain HTTP on the
fake's port, and resolves them with a fake DNS server on 127.0.0.1 (with a one-second validity)
that answers 127.0.0.1; every other line is the shipped file's. The TLS test keeps the shipped
HTTPS to WeChat, with its certificate checks, against a TLS front whose certificates a local
authority signed (`tls_front`): only the trusted authority's file is the test's."""

import http.server
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fake_dns import TYPE_A, FakeDNS
from harness import CLIENT_KEY, free_port
from setups import CORP, several

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "deploy" / "egress" / "wechat-egress.conf"
RELAY_KEY = "fake-secret-relay-key-0123456789"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"



def rendered(conf: str, port: int, upstream_port: int, dns_port: int, logs: Path,
             trusted: Path | None = None) -> str:
    """The shipped configuration with the test's address, key, upstreams, resolver and log
    files; with `trusted` (a CA file), WeChat is still reached over TLS, verified with it."""
    plain_upstreams = [
        ("proxy_pass https://$wechat_api;", "proxy_pass http://$wechat_api;"),
        ("proxy_pass https://$wecom_api;", "proxy_pass http://$wecom_api;"),
    ]
    tls_upstreams = [
        ("proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;",
         f"proxy_ssl_trusted_certificate {trusted};"),
    ]
    replacements = [*(tls_upstreams if trusted else plain_upstreams),
        ("listen 443 ssl;", f"listen 127.0.0.1:{port};"),
        ('"CHANGE-ME-to-a-long-random-key" 1;', f'"{RELAY_KEY}" 1;'),
        ("set $wechat_api api.weixin.qq.com;",
         f"set $wechat_api api.weixin.qq.com:{upstream_port};"),
        ("set $wecom_api qyapi.weixin.qq.com;",
         f"set $wecom_api qyapi.weixin.qq.com:{upstream_port};"),
        ("resolver 127.0.0.53 ipv6=off valid=60s;",
         f"resolver 127.0.0.1:{dns_port} ipv6=off valid=1s;"),
        ("/var/log/nginx/wechat-egress.access.log", str(logs / "access.log")),
        ("/var/log/nginx/wechat-egress.error.log", str(logs / "error.log")),
    ]
    for old, new in replacements:
        assert old in conf, old
        conf = conf.replace(old, new)
    # No certificate in the test (workerd would not trust one made here).
    return re.sub(r"\n\s*ssl_certificate(_key)? [^\n]*;", "", conf)


@pytest.fixture
def dns():
    server = FakeDNS().start()
    server.addresses = {"api.weixin.qq.com": "127.0.0.1", "qyapi.weixin.qq.com": "127.0.0.1"}
    yield server
    server.stop()


@pytest.fixture
def relay(fake, dns, tmp_path):
    yield from run_relay(fake.port, dns, tmp_path)


def run_relay(upstream_port, dns, tmp_path, trusted=None):
    assert Path(NGINX).exists(), "nginx is missing: scripts/setup installs Debian's package"
    port = free_port()
    conf = tmp_path / "nginx.conf"
    site = rendered(SHIPPED.read_text(), port, upstream_port, dns.port, tmp_path, trusted)
    conf.write_text(f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/main-error.log crit;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    access_log off;
{site}
}}
""")
    check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf),
                                "-g", "daemon off; master_process off;"],
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", tmp_path
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def direct(url, headers=None, answer_headers=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            if answer_headers is not None:
                answer_headers.update({k.lower(): v for k, v in r.headers.items()})
            return r.status
    except urllib.error.HTTPError as error:
        if answer_headers is not None:
            answer_headers.update({k.lower(): v for k, v in error.headers.items()})
        return error.code


def test_the_worker_reaches_wechat_through_the_relay(relay, start_worker, fake):
    base, logs = relay
    worker = start_worker(**several(
        fake, WECHAT_API_BASE=f"{base}/wechat", WECOM_API_BASE=f"{base}/wecom",
        WECHAT_EGRESS_KEY=RELAY_KEY))
    token = worker.get_token()
    assert token.status == 200, token.text
    assert worker.request("GET", "/ticket?type=jsapi").status == 200
    assert worker.request("GET", "/token?account=corp-app").status == 200
    reply = worker.request("GET", "/gateway/cgi-bin/user/info?openid=o1")
    assert reply.status == 200 and reply.json["openid"] == "o1", reply.text
    assert fake.calls == 2 and fake.calls_for(CORP[0]) == 1
    # The relay takes its key off before WeChat sees the call.
    assert "x-egress-key" not in fake.api_requests[0]["headers"]

    log = (logs / "access.log").read_text()
    assert "/wechat/cgi-bin/token" in log and "/wecom/cgi-bin/gettoken" in log
    everything = log + "".join(p.read_text() for p in logs.glob("*error.log"))
    for secret in [fake.secret, RELAY_KEY, token.json["access_token"], *fake.all_issued]:
        assert secret not in everything
    assert "?" not in log, "no query string in the relay's log"


def test_the_relay_refuses_calls_without_its_key(relay, fake):
    base, _ = relay
    path = f"{base}/wechat/cgi-bin/getcallbackip?access_token=x"
    refusal = {}
    assert direct(path, answer_headers=refusal) == 403
    assert refusal.get("x-egress-refused") == "1", "the relay marks its own refusal"
    assert direct(path, {"X-Egress-Key": "wrong-key-0123456789"}) == 403
    assert direct(path, {"X-Egress-Key": RELAY_KEY}) == 200
    assert direct(f"{base}/elsewhere/", {"X-Egress-Key": RELAY_KEY}) == 404
    assert fake.api_calls == 1


def test_a_wrong_relay_key_is_named_in_the_error(relay, start_worker, fake):
    base, _ = relay
    worker = start_worker(WECHAT_API_BASE=f"{base}/wechat",
                          WECHAT_EGRESS_KEY="fake-secret-relay-wrong-0123")
    reply = worker.get_token()
    body = json.loads(reply.text)
    assert reply.status == 502 and body["error"] == "egress_refused"
    assert "WECHAT_EGRESS_KEY" in body["message"]
    assert fake.calls == 0
    assert CLIENT_KEY not in reply.text


def test_wechats_own_403_and_media_sized_bodies_pass_through_the_relay(relay, start_worker, fake):
    base, logs = relay
    worker = start_worker(WECHAT_API_BASE=f"{base}/wechat", WECHAT_EGRESS_KEY=RELAY_KEY)
    denied = worker.request("GET", "/gateway/cgi-bin/denied")
    assert denied.status == 403 and denied.json["errcode"] == 48001, denied.text
    picture = bytes(range(256)) * (12 * 1024)  # 3 MiB: streamed, not kept
    boundary = "relay-boundary-0123456789"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="media"; '
            f'filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n').encode()
    body += picture + f"\r\n--{boundary}--\r\n".encode()
    uploaded = worker.request(
        "POST", "/gateway/cgi-bin/media/upload?type=image", body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert uploaded.status == 200, uploaded.text
    assert fake.media[uploaded.json["media_id"]] == picture
    assert "?" not in (logs / "access.log").read_text()


def test_the_relay_passes_only_what_a_wechat_call_needs(relay, fake):
    base, _ = relay
    headers = {
        "X-Egress-Key": RELAY_KEY, "CF-Connecting-IP": "2a06:98c0::1", "CF-Ray": "8f0-SJC",
        "CF-Worker": "example.com", "CF-EW-Via": "15", "CF-IPCountry": "US",
        "CDN-Loop": "cloudflare; loops=1", "X-Forwarded-For": "198.51.100.7",
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": "edge.example.com",
        "X-Real-IP": "198.51.100.7", "Cookie": "session=1", "Authorization": "Bearer k",
        "Accept": "application/json",
    }
    assert direct(f"{base}/wechat/cgi-bin/user/info?access_token=x&openid=o", headers) == 200
    [call] = fake.api_requests
    assert call["path"] == "/cgi-bin/user/info" and call["query"]["openid"] == "o"
    assert set(call["headers"]) <= {"host", "accept", "connection"}, call["headers"]
    assert call["headers"]["host"] == "api.weixin.qq.com"
    assert call["headers"]["accept"] == "application/json"


def test_the_relay_follows_wechats_address_over_ipv4_only(relay, dns, fake):
    base, _ = relay
    key = {"X-Egress-Key": RELAY_KEY}
    assert direct(f"{base}/wechat/cgi-bin/getcallbackip?access_token=x", key) == 200
    assert fake.api_calls == 1
    # WeChat moves: the name now points at another address (on loopback, a server of its own).
    moved = http.server.ThreadingHTTPServer(("127.0.0.2", fake.port), Moved)
    thread = threading.Thread(target=moved.serve_forever, daemon=True)
    thread.start()
    try:
        Moved.hits = 0
        dns.addresses["api.weixin.qq.com"] = "127.0.0.2"
        time.sleep(2.5)  # past the test's validity of a resolved name (1 s)
        assert direct(f"{base}/wechat/cgi-bin/getcallbackip?access_token=x", key) == 200
        assert Moved.hits == 1 and fake.api_calls == 1, "the relay kept WeChat's old address"
    finally:
        moved.shutdown()
        moved.server_close()
    asked = {qtype for name, qtype in dns.queries if name == "api.weixin.qq.com"}
    assert asked == {TYPE_A}, f"the relay asked for more than IPv4 addresses: {asked}"


class Moved(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802
        Moved.hits += 1
        body = b'{"ip_list":[]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_relays_own_error_page_reaches_sdks_in_wechats_shape(relay, dns, fake,
                                                                start_worker):
    base, _ = relay
    worker = start_worker(WECHAT_API_BASE=f"{base}/wechat", WECHAT_EGRESS_KEY=RELAY_KEY)
    token = worker.get_token().json["access_token"]
    # WeChat cannot be reached: nothing listens where its name now points.
    dns.addresses["api.weixin.qq.com"] = "127.0.0.3"
    time.sleep(2.5)
    keyed = worker.request("GET", "/gateway/cgi-bin/user/info?openid=o1")
    assert keyed.status == 502 and keyed.json["error"] == "upstream_http_error", keyed.text
    passed = worker.request("GET", f"/cgi-bin/user/info?access_token={token}&openid=o1",
                            key=None)
    assert passed.status == 200 and passed.json["errcode"] == -1, passed.text
    assert "<html>" not in passed.text and fake.api_requests == []


def test_the_relay_reaches_wechat_over_tls_with_its_name_and_a_verified_certificate(
        dns, fake, start_worker, tmp_path):
    from tls_front import Authority, TlsFront

    trusted = Authority(tmp_path)
    front = TlsFront(trusted.issue("api.weixin.qq.com", "qyapi.weixin.qq.com"), fake.port)
    front.start()
    relay = run_relay(front.port, dns, tmp_path, trusted=trusted.path)
    try:
        base, _ = next(relay)
        worker = start_worker(**several(
            fake, WECHAT_API_BASE=f"{base}/wechat", WECOM_API_BASE=f"{base}/wecom",
            WECHAT_EGRESS_KEY=RELAY_KEY, MIN_REFRESH_INTERVAL_SECS="0"))
        token = worker.get_token()
        assert token.status == 200, token.text
        assert worker.request("GET", "/token?account=corp-app").status == 200
        # Each name went in the handshake (SNI), as WeChat's servers need it.
        assert {"api.weixin.qq.com", "qyapi.weixin.qq.com"} <= set(front.server_names), \
            front.server_names
        calls = fake.calls

        # A certificate for another name, though from the trusted authority: refused.
        front.use(trusted.issue("not-wechat.example"))
        handshakes = len(front.server_names)
        refused = worker.request("POST", "/token/refresh",
                                 body=json.dumps({"stale_token": token.json["access_token"]}))
        assert refused.status == 502, refused.text
        assert len(front.server_names) > handshakes, "the relay reached the front, and refused"
        # One signed by an authority the relay does not trust: refused too.
        front.use(Authority(tmp_path / "other", "Untrusted CA").issue("api.weixin.qq.com"))
        handshakes = len(front.server_names)
        refused = worker.request("POST", "/token/refresh",
                                 body=json.dumps({"stale_token": token.json["access_token"]}))
        assert refused.status == 502, refused.text
        assert len(front.server_names) > handshakes, "the relay reached the front, and refused"
        assert fake.calls == calls, "nothing reached WeChat past a certificate it refused"
    finally:
        next(relay, None)
        front.stop()
