"""A fake WeChat API server for the end-to-end tests and the demo. Standard library only.

It answers WeChat's token endpoints the way WeChat does, for any number of apps:
  GET  /cgi-bin/token?grant_type=client_credential&appid=..&secret=..   (classic)
  POST /cgi-bin/stable_token {"grant_type","appid","secret","force_refresh"}
  GET  /cgi-bin/gettoken?corpid=..&corpsecret=..                      (WeCom)
  GET  /cgi-bin/ticket/getticket?access_token=..&type=jsapi|wx_card      (JS-SDK tickets)
  GET  /cgi-bin/get_jsapi_ticket?access_token=..                        (WeCom's)
  GET  /cgi-bin/getcallbackip?access_token=..       (an ordinary API call that uses a token)
  GET  /cgi-bin/user/info?access_token=..&openid=..  and  POST /cgi-bin/message/custom/send
  GET  /sns/jscode2session?appid=..&secret=..&js_code=..&grant_type=authorization_code
  POST /cgi-bin/media/upload?access_token=..&type=..  (multipart, `media` part)
  GET  /cgi-bin/media/get?access_token=..&media_id=..  (the file, binary)
  GET  /cgi-bin/user/get?access_token=..  (a follower list of `followers` openids: large JSON)
  GET  /sns/component/jscode2session, /sns/oauth2/component/{access_token,refresh_token}
       (the platform's login and web OAuth for an authorizer, with the component token)
  GET  /wxa/gettemplatelist?access_token=<component token>  (the platform's code templates)
       (the API calls the gateway tests make; every one is recorded with its headers, its query
       with every secret masked, and the appid whose token it carried)
Paths are routed as a relay in front of WeChat would deliver them: percent-decoded, and (as
the worst case for the gateway's rules) case-insensitively and without a trailing `/`.
It checks the credentials, issues fresh tokens, counts every call per account, and can be told
to fail the way WeChat fails. Like WeChat, a classic or WeCom token stays valid for
`grace_secs` (300 s) after the next one is issued, and a forced stable_token call kills the
previous stable token at once. It listens on 127.0.0.1 only.

In tests:   fake = FakeWeChat(appid, secret).start(); fake.mode = "busy"; fake.calls; fake.stop()
As a demo:  python3 tests/fake_wechat.py --port 9100 --appid wxdemo --secret demo-secret
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fake_openapi import OPENAPI_PATHS, FakeOpenApi
from fake_platform import FakePlatform
from fake_wecom_provider import FakeWeComProvider


class _Server(ThreadingHTTPServer):
    # WeChat takes a burst of connections; socketserver's default backlog of 5 would drop
    # SYNs under one and turn it into retransmission delays.
    request_queue_size = 256
from urllib.parse import parse_qs, unquote, urlsplit

# Each failure mode, as WeChat (or the network in front of it) would produce it.
MODES = {
    "ok",  # a fresh token
    "busy",  # {"errcode":-1,"errmsg":"system error"}
    "ip_not_whitelisted",  # 40164 with the caller's IP in the message
    "ip_not_registered",  # 61004, likewise
    "admin_confirm",  # 89503: the call waits for an administrator's confirmation
    "quota",  # 45009 daily quota reached
    "http_500",  # an HTML error page with status 500
    "truncated",  # status 200, a JSON body cut short
    "slow",  # a fresh token, after `slow_ms`
    "lost",  # a fresh token is issued, but the answer comes only after `lost_ms`
}

FAKE_EGRESS_IP = "203.0.113.7"
# Query parameters that carry a secret: recorded masked.
SECRET_PARAMETERS = ("access_token", "component_access_token", "secret", "js_code", "code",
                     "refresh_token")
# stable_token's normal mode hands out the current token until this close to its expiry.
STABLE_RENEW_BEFORE_SECS = 300


class FakeWeChat:
    def __init__(self, appid: str, secret: str, port: int = 0):
        self.appid = appid
        self.secret = secret
        self.apps: dict[str, str] = {appid: secret}  # appid or corpid -> secret
        self.mode = "ok"
        self.modes: dict[str, str] = {}  # per-account override of `mode`
        self.expires_in = 7200
        self.latency_ms = 0  # added to every answer, to widen race windows in tests
        self.slow_ms = 3000
        self.lost_ms = 6000
        # An API call's answer held back `stall_secs`: "headers" (nothing sent yet) or "body"
        # (the headers and half the body sent): a WeChat that stops answering half-way.
        self.api_stall: str | None = None
        self.stall_secs = 6.0
        self.grace_secs = 300  # how long a replaced classic or WeCom token keeps working
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self.calls = 0
        self.calls_by: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_in_flight_by: Counter[str] = Counter()
        self._in_flight_by: Counter[str] = Counter()
        self.issued: list[str] = []  # since the last reset
        self.issued_by: dict[str, list[str]] = {}
        self.all_issued: list[str] = []  # ever, for the log checks
        self.issued_at: dict[str, float] = {}  # token -> when it was issued (time.time())
        self.requests: list[dict] = []  # each call's parameters, secret included: tests only
        self.call_times: list[float] = []  # when each token call arrived (time.monotonic())
        self._stable: dict[str, tuple[str, float]] = {}  # appid -> (token, expires_at)
        self._wecom_current: dict[str, str] = {}  # corpid -> the token gettoken hands back
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (appid, expires_at)
        self._latest: dict[tuple[str, str], str] = {}  # (appid, "rotating"|"stable") -> token
        self.api_calls = 0  # calls of getcallbackip, the API that uses a token
        self.api_rejected: list[str] = []  # tokens getcallbackip refused
        self.api_requests: list[dict] = []  # gateway-style API calls: method, path, headers
        self.messages: list[dict] = []  # custom-message bodies received
        self.login_codes: set[str] = set()  # js_codes and OAuth codes not used yet
        self.user_tokens: dict[str, str] = {}  # web OAuth user token -> openid
        self.user_refresh: dict[str, tuple[str, str]] = {}  # refresh token -> (appid, openid)
        self.media: dict[str, bytes] = {}  # media_id -> the uploaded file
        self.followers = 6000  # how many openids user/get lists (about 200 KB of JSON)
        self.chunked_answers = False  # answer without a Content-Length, in chunks
        self.redirect_to: str | None = None  # where /cgi-bin/redirect points
        self.answer_headers: dict[str, str] = {}  # added to every answer
        self.egress_key: str | None = None  # when set, act as the relay: 403 without this key
        self.egress_refused = 0
        self.revoked: set[str] = set()  # tokens getticket answers with 40001
        # What a rejected token is answered: 40001, or 42001 (expired) or 40014 (invalid),
        # which WeChat also answers and the server must heal alike.
        self.rejection_errcode = 40001
        self.ticket_mode = "ok"  # or "busy"
        self.ticket_expires_in = 7200
        self.ticket_calls: Counter[tuple[str, str]] = Counter()  # (appid, type) -> calls
        self.tickets_issued: list[str] = []
        self.platform = FakePlatform(self, "wxcomponent0000001", "fake-secret-component-0123")
        self.openapi = FakeOpenApi(self)
        self.wecom_provider = FakeWeComProvider()
        self.rids = True  # append a rid to every error's errmsg, as WeChat does
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeWeChat":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def add_app(self, appid: str, secret: str) -> None:
        """Another official account, mini program, or WeCom app (corpid + its secret)."""
        self.apps[appid] = secret

    def reset(self, mode: str = "ok", expires_in: int = 7200) -> None:
        with self._lock:
            self.mode = mode
            self.modes.clear()
            self.expires_in = expires_in
            self.latency_ms = 0
            self.calls = 0
            self.calls_by.clear()
            self.max_in_flight = 0
            self.max_in_flight_by.clear()
            self.issued.clear()
            self.issued_by.clear()
            self.requests.clear()
            self.call_times.clear()
            self._stable.clear()
            self._wecom_current.clear()
            self.revoked.clear()
            self.rejection_errcode = 40001
            self.ticket_mode = "ok"
            self.ticket_expires_in = 7200
            self.ticket_calls.clear()
            self.grace_secs = 300
            self.lost_ms = 6000
            self.slow_ms = 3000
            self.api_stall = None
            self.stall_secs = 6.0
            self.api_calls = 0
            self.api_rejected.clear()
            self.api_requests.clear()
            self.messages.clear()
            self.login_codes.clear()
            self.user_tokens.clear()
            self.user_refresh.clear()
            self.media.clear()
            self.chunked_answers = False
            self.redirect_to = None
            self.answer_headers = {}
            self.egress_key = None
            self.egress_refused = 0
            self.rids = True
        self.platform.reset()
        self.openapi.reset()
        self.wecom_provider.reset()


    @property
    def current_token(self) -> str | None:
        with self._lock:
            return self.issued[-1] if self.issued else None

    def current_token_for(self, appid: str) -> str | None:
        with self._lock:
            tokens = self.issued_by.get(appid)
            return tokens[-1] if tokens else None

    def is_valid(self, token: str) -> bool:
        """Whether WeChat would accept `token` now."""
        with self._lock:
            appid, expires_at = self._tokens.get(token, (None, 0))
        return appid is not None and expires_at > time.time() and token not in self.revoked

    def token_owner(self, token: str) -> str | None:
        """The appid a token was issued to (the platform's for a component token), valid or not."""
        with self._lock:
            owner = self._tokens.get(token, (None, 0))[0]
        if owner is None and token in self.platform.component_tokens:
            owner = self.platform.appid
        return owner

    def calls_for(self, appid: str) -> int:
        with self._lock:
            return self.calls_by[appid]

    # Endpoints: each returns (status, content type, body).

    def classic_token(self, query: dict[str, str]):
        if query.get("grant_type") != "client_credential":
            return _json({"errcode": 40002, "errmsg": "invalid grant_type"})
        return self._issue(query.get("appid"), query.get("secret"), bad_secret=40125)

    def stable_token(self, body: dict):
        if body.get("grant_type") != "client_credential":
            return _json({"errcode": 40002, "errmsg": "invalid grant_type"})
        appid = body.get("appid")
        family = "stable_forced" if body.get("force_refresh") is True else "stable"
        return self._issue(appid, body.get("secret"), bad_secret=40125, family=family)

    def wecom_token(self, query: dict[str, str]):
        # As WeCom documents: while the token it issued is valid, the same one again, with the
        # full lifetime announced; the token still dies at its first expiry.
        answer = self._issue(query.get("corpid"), query.get("corpsecret"), bad_secret=40001,
                             same_while_valid=True)
        status, content_type, text = answer
        if status == 200 and content_type.startswith("application/json"):
            payload = json.loads(text)
            if "access_token" in payload:  # WeCom says errcode 0 on success
                return _json({"errcode": 0, "errmsg": "ok", **payload})
        return answer

    def ticket(self, query: dict[str, str], wecom: bool = False, agent: bool = False):
        token = query.get("access_token", "")
        # WeCom: get_jsapi_ticket is the corporation's jsapi ticket; ticket/get with
        # type=agent_config an application's.
        kind = query.get("type", "") if agent else "jsapi" if wecom else query.get("type", "")
        wecom = wecom or agent
        # A WeCom corporation's token, issued by the service-provider side.
        corp = self.wecom_provider.corp_of(token) if wecom else None
        with self._lock:
            appid, _ = self._tokens.get(token, (corp, 0))
            self.ticket_calls[(str(appid), kind)] += 1
        if not self.is_valid(token) and corp is None:
            return self.token_rejection()
        if kind not in (("agent_config",) if agent else ("jsapi", "wx_card")):
            return _json({"errcode": 40097, "errmsg": "invalid args"})
        if self.ticket_mode == "busy":
            return _json({"errcode": -1, "errmsg": "system error"})
        with self._lock:
            ticket = f"TICKET-{appid}-{kind}-{next(self._serial):04d}-{secrets.token_hex(8)}"
            self.tickets_issued.append(ticket)
        return _json({"errcode": 0, "errmsg": "ok", "ticket": ticket,
                      "expires_in": self.ticket_expires_in})

    def token_rejection(self):
        errmsg = {40001: "invalid credential, access_token is invalid or not latest",
                  42001: "access_token expired", 40014: "invalid access_token"}
        return _json({"errcode": self.rejection_errcode,
                      "errmsg": errmsg[self.rejection_errcode]})

    def callback_ip(self, query: dict[str, str]):
        token = query.get("access_token", "")
        with self._lock:
            self.api_calls += 1
        if not self.is_valid(token):
            with self._lock:
                self.api_rejected.append(token)
            return self.token_rejection()
        return _json({"ip_list": ["101.226.103.0/25"]})

    def _token_error(self, token: str):
        with self._lock:
            self.api_calls += 1
        if self.is_valid(token):
            return None
        with self._lock:
            self.api_rejected.append(token)
        return self.token_rejection()

    def user_info(self, query: dict[str, str]):
        return self._token_error(query.get("access_token", "")) or _json(
            {"subscribe": 1, "openid": query.get("openid", ""), "nickname": "fake user"})

    def custom_send(self, query: dict[str, str], body: bytes):
        refused = self._token_error(query.get("access_token", ""))
        if refused:
            return refused
        try:
            message = json.loads(body)
        except ValueError:
            return _json({"errcode": 47001, "errmsg": "data format error"})
        with self._lock:
            self.messages.append(message)
        return _json({"errcode": 0, "errmsg": "ok"})

    def media_upload(self, query: dict[str, str], content_type: str, body: bytes):
        refused = self._token_error(query.get("access_token", ""))
        if refused:
            return refused
        data = _multipart_file(content_type, body, "media")
        if data is None:
            return _json({"errcode": 41005, "errmsg": "media data missing"})
        with self._lock:
            media_id = f"MEDIA-{next(self._serial):04d}"
            self.media[media_id] = data
        return _json({"type": query.get("type", "image"), "media_id": media_id,
                      "created_at": int(time.time())})

    def media_get(self, query: dict[str, str]):
        refused = self._token_error(query.get("access_token", ""))
        if refused:
            return refused
        media_id = query.get("media_id", "")
        if media_id not in self.media:
            return _json({"errcode": 40007, "errmsg": "invalid media_id"})
        return 200, "image/jpeg", self.media[media_id], {
            "Content-disposition": f'attachment; filename="{media_id}.jpg"'}

    def user_list(self, query: dict[str, str]):
        refused = self._token_error(query.get("access_token", ""))
        if refused:
            return refused
        openids = [f"oFAKE{i:023d}" for i in range(self.followers)]
        return _json({"total": len(openids), "count": len(openids),
                      "data": {"openid": openids}, "next_openid": openids[-1]})

    def web_oauth(self, path: str, query: dict[str, str]):
        """Web OAuth (网页授权): a code for a user's token with the appsecret; a user's token for
        the user's info; a refresh token, with the appid only, for a new user token."""
        appid = query.get("appid")
        with self._lock:
            if path == "/sns/oauth2/access_token":
                if appid not in self.apps:
                    return _json({"errcode": 40013, "errmsg": "invalid appid"})
                if query.get("secret") != self.apps[appid]:
                    return _json({"errcode": 40125, "errmsg": "invalid appsecret"})
                code = query.get("code", "")
                if code not in self.login_codes:
                    return _json({"errcode": 40029, "errmsg": "invalid code"})
                self.login_codes.discard(code)
                return self._user_token_locked(appid, code)
            if path == "/sns/oauth2/refresh_token":
                return self._renewed_user_token_locked(appid, query.get("refresh_token", ""))
            openid = self.user_tokens.get(query.get("access_token", ""))
            if openid is None or openid != query.get("openid"):
                return _json({"errcode": 40001, "errmsg": "invalid credential"})
            if path == "/sns/auth":  # whether a user's token is still valid
                return _json({"errcode": 0, "errmsg": "ok"})
            return _json({"openid": openid, "nickname": "web user"})

    def component_login(self, path: str, query: dict[str, str]):
        """The platform's login and web OAuth for an authorizer: the authorizer's appid, the
        platform's appid and a current component token (WeChat's thirdpartyCode2Session and
        component web OAuth)."""
        platform = self.platform
        if query.get("component_appid") != platform.appid:
            return _json({"errcode": 40013, "errmsg": "invalid component appid"})
        if not platform.component_token_valid(query.get("component_access_token", "")):
            return self.token_rejection()
        appid = query.get("appid", "")
        if appid not in platform.refresh_tokens:
            return _json({"errcode": 61003, "errmsg": "component is not authorized by this "
                          "account"})
        with self._lock:
            if path == "/sns/oauth2/component/refresh_token":
                return self._renewed_user_token_locked(appid, query.get("refresh_token", ""))
            code = query.get("js_code" if path == "/sns/component/jscode2session" else "code", "")
            if code not in self.login_codes:
                return _json({"errcode": 40029, "errmsg": "invalid code"})
            self.login_codes.discard(code)
            if path == "/sns/component/jscode2session":
                return _json({"openid": f"openid-{code}", "session_key": f"session-{code}"})
            return self._user_token_locked(appid, code)

    def _user_token_locked(self, appid: str, code: str):
        """A user's web OAuth token and refresh token for a code (the lock held)."""
        user_token, refresh = f"USER-{secrets.token_hex(8)}", f"REFRESH-{secrets.token_hex(8)}"
        self.user_tokens[user_token] = f"openid-{code}"
        self.user_refresh[refresh] = (appid, f"openid-{code}")
        return _json({"access_token": user_token, "expires_in": 7200,
                      "refresh_token": refresh, "openid": f"openid-{code}",
                      "scope": "snsapi_userinfo"})

    def _renewed_user_token_locked(self, appid: str, refresh: str):
        """A new web OAuth token for a user's refresh token of `appid` (the lock held)."""
        owner = self.user_refresh.get(refresh)
        if owner is None or owner[0] != appid:
            return _json({"errcode": 40030, "errmsg": "invalid refresh_token"})
        user_token = f"USER-{secrets.token_hex(8)}"
        self.user_tokens[user_token] = owner[1]
        return _json({"access_token": user_token, "expires_in": 7200,
                      "refresh_token": refresh, "openid": owner[1], "scope": "snsapi_userinfo"})

    def template_list(self, query: dict[str, str]):
        """The platform's code templates: `access_token` holds the component token."""
        if not self.platform.component_token_valid(query.get("access_token", "")):
            return self.token_rejection()
        return _json({"errcode": 0, "errmsg": "ok", "template_list": [
            {"template_id": 7, "user_version": "1.0.0", "user_desc": "fake template"}]})

    def code_to_session(self, query: dict[str, str]):
        appid, code = query.get("appid"), query.get("js_code", "")
        if appid not in self.apps:
            return _json({"errcode": 40013, "errmsg": "invalid appid"})
        if query.get("secret") != self.apps[appid]:
            return _json({"errcode": 40125, "errmsg": "invalid appsecret"})
        with self._lock:
            if code not in self.login_codes:
                return _json({"errcode": 40029, "errmsg": "invalid code"})
            self.login_codes.discard(code)  # single use, as WeChat's
        return _json({"openid": f"openid-{code}", "session_key": f"session-{code}"})

    def ticket_calls_for(self, appid: str, kind: str = "jsapi") -> int:
        with self._lock:
            return self.ticket_calls[(appid, kind)]

    def _issue(self, appid, secret, bad_secret: int, family: str = "rotating",
               same_while_valid: bool = False):
        if appid not in self.apps:
            return _json({"errcode": 40013, "errmsg": "invalid appid"})
        if secret != self.apps[appid]:
            return _json({"errcode": bad_secret, "errmsg": "invalid appsecret"})
        mode = self.modes.get(appid, self.mode)
        if mode == "busy":
            return _json({"errcode": -1, "errmsg": "system error"})
        if mode == "ip_not_whitelisted":
            return _json({
                "errcode": 40164,
                "errmsg": f"invalid ip {FAKE_EGRESS_IP} ipv6 ::ffff:{FAKE_EGRESS_IP}, "
                "not in whitelist rid: 6620d1f0-1a2b3c4d",
            })
        if mode == "ip_not_registered":
            return _json({"errcode": 61004, "errmsg": "access clientip is not registered "
                          f"requestIP: {FAKE_EGRESS_IP} rid: 6620d1f0-5e6f"})
        if mode == "admin_confirm":
            return _json({"errcode": 89503, "errmsg": f"call from ip {FAKE_EGRESS_IP} needs the "
                          "administrator's confirmation rid: 6620d1f0-7a8b"})
        if mode == "ip_waiting":
            return _json({"errcode": 89501, "errmsg": f"ip {FAKE_EGRESS_IP} is waiting for the "
                          "administrator's confirmation rid: 6620d1f0-9c0d"})
        if mode == "ip_blocked_hour":
            return _json({"errcode": 89507, "errmsg": f"ip {FAKE_EGRESS_IP} was refused by the "
                          "administrator, blocked for 1 hour rid: 6620d1f0-1e2f"})
        if mode == "quota":
            return _json({"errcode": 45009, "errmsg": "reach max api daily quota limit"})
        if mode == "http_500":
            return 500, "text/html", "<html><body>502 Bad Gateway</body></html>"
        if mode == "truncated":
            return 200, "application/json", '{"access_token":"FAKE-cut","expi'
        if mode == "slow":
            time.sleep(self.slow_ms / 1000)
        with self._lock:
            now = time.time()
            current = self._stable.get(appid)
            if family == "stable" and current and current[1] - now > STABLE_RENEW_BEFORE_SECS:
                return _json({"access_token": current[0], "expires_in": int(current[1] - now)})
            held = self._wecom_current.get(appid)
            if same_while_valid and held and self._tokens.get(held, ("", 0))[1] > now \
                    and held not in self.revoked:
                token = held
            else:
                token = self._mint_locked(appid, family, self.expires_in)
            if same_while_valid:
                self._wecom_current[appid] = token
        if mode == "lost":  # issued, but the caller gives up before the answer arrives
            time.sleep(self.lost_ms / 1000)
        return _json({"access_token": token, "expires_in": self.expires_in})

    def mint(self, appid: str, expires_in: int) -> str:
        """A new token for `appid` that replaces its previous one after the grace period (an
        authorizer's token, issued by the open platform's side)."""
        with self._lock:
            return self._mint_locked(appid, "rotating", expires_in)

    def _mint_locked(self, appid: str, family: str, expires_in: int) -> str:
        now = time.time()
        token = f"FAKE-{appid}-{next(self._serial):04d}-{secrets.token_hex(8)}"
        lineage = "rotating" if family == "rotating" else "stable"
        previous = self._latest.get((appid, lineage))
        if previous in self._tokens:
            owner, expires_at = self._tokens[previous]
            # classic/WeCom: the old token lives on for a while; forced stable: it dies now.
            ends = {"rotating": now + self.grace_secs, "stable_forced": now}.get(family)
            if ends is not None:
                self._tokens[previous] = (owner, min(expires_at, ends))
        self._latest[(appid, lineage)] = token
        if lineage == "stable":
            self._stable[appid] = (token, now + expires_in)
        self._tokens[token] = (appid, now + expires_in)
        self.issued.append(token)
        self.issued_by.setdefault(appid, []).append(token)
        self.all_issued.append(token)
        self.issued_at[token] = now
        return token

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay_refuses(self) -> bool:
                if fake.egress_key is None or self.headers.get("X-Egress-Key") == fake.egress_key:
                    return False
                with fake._lock:
                    fake.egress_refused += 1
                # As the shipped relay answers: its refusal marked as its own.
                self._send(403, "text/plain", "forbidden", {"X-Egress-Refused": "1"})
                return True

            def do_GET(self):  # noqa: N802 (http.server's naming)
                self._raw = b""
                if self._relay_refuses():
                    return
                url = _routed(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/cgi-bin/token":
                    self._serve("token", query, query.get("appid"), fake.classic_token)
                elif url.path == "/cgi-bin/gettoken":
                    self._serve("gettoken", query, query.get("corpid"), fake.wecom_token)
                elif url.path == "/cgi-bin/ticket/getticket":
                    self._send(*fake.ticket(query))
                elif url.path == "/cgi-bin/get_jsapi_ticket":
                    self._send(*fake.ticket(query, wecom=True))
                elif url.path == "/cgi-bin/ticket/get":
                    self._send(*fake.ticket(query, agent=True))
                elif url.path == "/cgi-bin/getcallbackip":
                    self._send(*fake.callback_ip(query))
                elif url.path == "/cgi-bin/user/info":
                    self._record_api()
                    self._send(*fake.user_info(query))
                elif url.path == "/sns/jscode2session":
                    self._record_api()
                    self._send(*fake.code_to_session(query))
                elif url.path == "/cgi-bin/media/get":
                    self._record_api()
                    self._send(*fake.media_get(query))
                elif url.path == "/cgi-bin/user/get":
                    self._record_api()
                    self._send(*fake.user_list(query))
                elif url.path in fake.wecom_provider.API_PATHS:
                    self._send(*fake.wecom_provider.handle_get(url.path, query))
                elif url.path == "/cgi-bin/denied":
                    # WeChat's own 403 (a relay must pass it on as such).
                    self._record_api()
                    self._send(*_json({"errcode": 48001, "errmsg": "api unauthorized"},
                                      status=403))
                elif url.path in ("/sns/userinfo", "/sns/auth", "/sns/oauth2/refresh_token",
                                  "/sns/oauth2/access_token"):
                    self._record_api()
                    self._send(*fake.web_oauth(url.path, query))
                elif url.path in ("/sns/component/jscode2session",
                                  "/sns/oauth2/component/access_token",
                                  "/sns/oauth2/component/refresh_token"):
                    self._record_api()
                    self._send(*fake.component_login(url.path, query))
                elif url.path == "/wxa/gettemplatelist":
                    self._record_api()
                    self._send(*fake.template_list(query))
                elif url.path == "/cgi-bin/redirect" and fake.redirect_to:
                    self._record_api()
                    self._send(302, "text/html", "moved", {"Location": fake.redirect_to})
                elif url.path == "/cgi-bin/relay_down":
                    # What an nginx relay answers when WeChat cannot be reached.
                    self._record_api()
                    self._send(502, "text/html", "<html><head><title>502 Bad Gateway</title>"
                               "</head><body><center><h1>502 Bad Gateway</h1></center>"
                               "<hr><center>nginx</center></body></html>")
                elif url.path == "/cgi-bin/hangup":
                    # The connection drops before any answer (a network failure mid-call).
                    self._record_api()
                    self.close_connection = True
                else:
                    self._send(*_json({"errcode": 404, "errmsg": "not found"}, status=404))

            def do_POST(self):  # noqa: N802
                url = _routed(self.path)
                raw = self._read_body()
                self._raw = raw
                if self._relay_refuses():
                    return
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/cgi-bin/message/custom/send":
                    self._record_api(len(raw))
                    self._send(*fake.custom_send(query, raw))
                    return
                if url.path == "/cgi-bin/media/upload":
                    self._record_api(len(raw))
                    content_type = self.headers.get("Content-Type", "")
                    self._send(*fake.media_upload(query, content_type, raw))
                    return
                if url.path in OPENAPI_PATHS:
                    self._send(*fake.openapi.handle(url.path, query, raw))
                    return
                if url.path.startswith("/cgi-bin/service/"):
                    self._send(*fake.wecom_provider.handle(url.path, query, raw))
                    return
                if url.path.startswith("/cgi-bin/component/"):
                    self._record_api(len(raw))
                    self._send(*fake.platform.handle(url.path, query, raw))
                    return
                if url.path != "/cgi-bin/stable_token":
                    self._send(*_json({"errcode": 404, "errmsg": "not found"}, status=404))
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(*_json({"errcode": 47001, "errmsg": "data format error"}))
                    return
                self._serve("stable_token", body, body.get("appid"), fake.stable_token)

            def _serve(self, endpoint: str, params: dict, account, answer) -> None:
                account = str(account)
                with fake._lock:
                    fake.calls += 1
                    fake.calls_by[account] += 1
                    fake.requests.append({"endpoint": endpoint, **params})
                    fake.call_times.append(time.monotonic())
                    fake.in_flight += 1
                    fake._in_flight_by[account] += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    fake.max_in_flight_by[account] = max(
                        fake.max_in_flight_by[account], fake._in_flight_by[account])
                try:
                    if fake.latency_ms:
                        time.sleep(fake.latency_ms / 1000)
                    self._send(*answer(params))
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                        fake._in_flight_by[account] -= 1

            def _record_api(self, body_bytes: int = 0) -> None:
                self._stalling = fake.api_stall
                url = _routed(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                token = query.get("access_token") or query.get("component_access_token") or ""
                owner = fake.token_owner(token)
                with fake._lock:
                    fake.api_requests.append({
                        "method": self.command, "path": url.path,
                        "raw_path": urlsplit(self.path).path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body_bytes": body_bytes,
                        "query": {k: ("***" if k in SECRET_PARAMETERS else v)
                                  for k, v in query.items()},
                        "token_appid": owner,
                    })

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers, up to the blank line that ends the body
                            return data
                        data += self.rfile.read(size + 2)[:size]  # each chunk ends in CRLF
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, content_type: str, body: str | bytes,
                      extra_headers: dict | None = None) -> None:
                if fake.rids and content_type.startswith("application/json") and isinstance(body, str):
                    body = self._with_rid(body)
                data = body.encode() if isinstance(body, str) else body
                stalling = getattr(self, "_stalling", None)
                self._stalling = None
                if stalling == "headers":
                    time.sleep(fake.stall_secs)
                try:
                    self._send_now(status, content_type, data, extra_headers, stalling)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the worker gave up (timeout test)

            def _send_now(self, status, content_type, data, extra_headers, stalling) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in {**fake.answer_headers, **(extra_headers or {})}.items():
                    self.send_header(name, value)
                if fake.chunked_answers:
                    self.send_header("Transfer-Encoding", "chunked")
                    pieces = [data[i:i + 16384] for i in range(0, len(data), 16384)]
                    data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if stalling == "body":
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    time.sleep(fake.stall_secs)
                    data = data[len(data) // 2:]
                self.wfile.write(data)

            def _with_rid(self, body: str) -> str:
                """An error's errmsg ends in a rid, as WeChat's do; the call is kept for
                `rid/get`, for the account the call was made as."""
                try:
                    answer = json.loads(body)
                except ValueError:
                    return body
                if not isinstance(answer, dict) or not answer.get("errcode") \
                        or "rid:" in str(answer.get("errmsg", "")):
                    return body
                split = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(split.query).items()}
                try:
                    sent = json.loads(self._raw or b"{}")
                except ValueError:
                    sent = {}
                sent = sent if isinstance(sent, dict) else {}
                token = query.get("access_token") or query.get("component_access_token") or ""
                owner = (query.get("appid") or query.get("corpid") or sent.get("appid")
                         or sent.get("component_appid") or fake.token_owner(token))
                raw_body = self._raw.decode("utf-8", "replace")
                return fake.openapi.record(owner, split.query, raw_body, answer)

            def log_message(self, *args) -> None:
                pass  # request lines carry the secret: never print them

        return Handler


def _routed(raw_path: str):
    """The request's path as a decoding relay delivers it and the routes match it."""
    url = urlsplit(raw_path)
    path = unquote(url.path).lower().rstrip("/") or "/"
    return url._replace(path=path)


def _multipart_file(content_type: str, body: bytes, field: str) -> bytes | None:
    """The content of the form-data part named `field`, read the way a server reads it."""
    marker = "boundary="
    if not content_type.startswith("multipart/form-data") or marker not in content_type:
        return None
    boundary = content_type.split(marker, 1)[1].split(";")[0].strip().strip('"').encode()
    for part in body.split(b"--" + boundary)[1:]:
        head, _, content = part.partition(b"\r\n\r\n")
        if f'name="{field}"'.encode() in head:
            return content[:-2] if content.endswith(b"\r\n") else content
    return None


def _json(payload: dict, status: int = 200) -> tuple[int, str, str]:
    return status, "application/json; charset=utf-8", json.dumps(payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--appid", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--mode", choices=sorted(MODES), default="ok")
    args = parser.parse_args()
    fake = FakeWeChat(args.appid, args.secret, args.port)
    fake.mode = args.mode
    fake.start()
    print(f"fake WeChat listening on {fake.base_url} (appid {args.appid})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
