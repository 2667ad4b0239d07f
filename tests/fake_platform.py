"""The open platform's side of the fake WeChat (第三方平台): it issues verify tickets (which the
tests push to the edge, sealed with `wechat_push`), component tokens for a current ticket,
pre-auth codes, authorization codes and authorizer tokens with their refresh tokens, by its own
rules, apart from the worker's code."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter

import wechat_push

TICKET_LIFE_SECS = 12 * 3600


def _json(payload: dict, status: int = 200):
    return status, "application/json", json.dumps(payload, ensure_ascii=False)


class FakePlatform:
    def __init__(self, wechat, appid: str, secret: str):
        self.wechat = wechat  # the FakeWeChat: authorizer tokens are its tokens
        self.appid = appid
        self.secret = secret
        self.token = "fake-push-token-" + secrets.token_hex(6)
        self.encoding_aes_key = wechat_push.new_encoding_aes_key()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.tickets: dict[str, float] = {}  # verify ticket -> when issued
            self.tickets_used: list[str] = []  # the verify ticket of each component-token call
            self.component_tokens: dict[str, float] = {}  # token -> expires_at
            self.revoked: set[str] = set()
            self.component_expires_in = 7200
            self.pre_auth_codes: set[str] = set()
            self.auth_codes: dict[str, str] = {}  # code -> authorizer appid
            self.refresh_tokens: dict[str, str] = {}  # authorizer appid -> current refresh token
            self.listed_refresh: dict[str, str] = {}  # what api_get_authorizer_list shows
            self.rotate_refresh = False  # answer a new refresh token on each refresh
            self.calls: Counter[str] = Counter()  # endpoint -> calls
            self.authorizer_calls: Counter[str] = Counter()  # appid -> api_authorizer_token
            self.authorizer_expires_in = 7200
            self.latency_ms = 0
            # A nick name with a raw control character, as a user may choose one: the answer
            # that carries it is then not valid JSON.
            self.raw_nick_name: str | None = None
            self.all_secrets: list[str] = []  # every ticket, code and refresh token, for logs

    # What the tests do as WeChat.

    def new_ticket(self, issued_at: float | None = None) -> str:
        ticket = "ticket@@@" + secrets.token_urlsafe(24)
        with self._lock:
            self.tickets[ticket] = time.time() if issued_at is None else issued_at
            self.all_secrets.append(ticket)
        return ticket

    def new_authorization(self, authorizer: str) -> str:
        code = "queryauthcode@@@" + secrets.token_urlsafe(18)
        with self._lock:
            self.auth_codes[code] = authorizer
            self.all_secrets.append(code)
        return code

    def seal(self, message: str, **overrides) -> tuple[str, str]:
        fields = {"token": self.token, "encoding_aes_key": self.encoding_aes_key,
                  "appid": self.appid, **overrides}
        return wechat_push.sealed_push(message, **fields)

    def component_token_valid(self, token: str) -> bool:
        with self._lock:
            expires_at = self.component_tokens.get(token)
            return expires_at is not None and expires_at > time.time() and \
                token not in self.revoked

    # WeChat's endpoints.

    def handle(self, path: str, query: dict[str, str], raw: bytes):
        endpoint = path.rsplit("/", 1)[-1]
        with self._lock:
            self.calls[endpoint] += 1
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _json({"errcode": 47001, "errmsg": "data format error"})
        if endpoint == "api_component_token":
            return self._component_token(body)
        if endpoint == "api_start_push_ticket":
            if (body.get("component_appid"), body.get("component_secret")) != \
                    (self.appid, self.secret):
                return _json({"errcode": 40013, "errmsg": "invalid appid or secret"})
            return _json({"errcode": 0, "errmsg": "ok"})
        if not self.component_token_valid(query.get("component_access_token", "")):
            return self.wechat.token_rejection()
        if body.get("component_appid") != self.appid:
            return _json({"errcode": 40013, "errmsg": "invalid appid"})
        handlers = {
            "api_create_preauthcode": self._pre_auth_code,
            "api_query_auth": self._query_auth,
            "api_authorizer_token": self._authorizer_token,
            "api_get_authorizer_list": self._authorizer_list,
            "api_get_authorizer_info": self._authorizer_info,
        }
        handler = handlers.get(endpoint)
        if handler is None:
            return _json({"errcode": 404, "errmsg": "not found"}, status=404)
        return handler(body)

    def _component_token(self, body: dict):
        if body.get("component_appid") != self.appid:
            return _json({"errcode": 40013, "errmsg": "invalid appid"})
        if body.get("component_appsecret") != self.secret:
            return _json({"errcode": 40125, "errmsg": "invalid appsecret"})
        with self._lock:
            self.tickets_used.append(body.get("component_verify_ticket", ""))
            issued_at = self.tickets.get(body.get("component_verify_ticket", ""))
            if issued_at is None:
                return _json({"errcode": 61006, "errmsg": "component ticket is invalid"})
            if issued_at + TICKET_LIFE_SECS < time.time():
                return _json({"errcode": 61005, "errmsg": "component ticket is expired"})
            token = "COMPONENT-" + secrets.token_hex(12)
            self.component_tokens[token] = time.time() + self.component_expires_in
            self.wechat.all_issued.append(token)
        return _json({"component_access_token": token,
                      "expires_in": self.component_expires_in})

    def _pre_auth_code(self, body: dict):
        code = "preauthcode@@@" + secrets.token_urlsafe(18)
        with self._lock:
            self.pre_auth_codes.add(code)
            self.all_secrets.append(code)
        return _json({"pre_auth_code": code, "expires_in": 1800})

    def _new_refresh_token(self, authorizer: str) -> str:
        refresh = "refreshtoken@@@" + secrets.token_urlsafe(18)
        self.refresh_tokens[authorizer] = refresh
        self.listed_refresh[authorizer] = refresh
        self.all_secrets.append(refresh)
        return refresh

    def _query_auth(self, body: dict):
        with self._lock:
            authorizer = self.auth_codes.pop(body.get("authorization_code", ""), None)
            if authorizer is None:
                return _json({"errcode": 61010, "errmsg": "code is expired"})
            refresh = self._new_refresh_token(authorizer)
        token = self.wechat.mint(authorizer, self.authorizer_expires_in)
        return _json({"authorization_info": {
            "authorizer_appid": authorizer, "authorizer_access_token": token,
            "expires_in": self.authorizer_expires_in, "authorizer_refresh_token": refresh,
            "func_info": [{"funcscope_category": {"id": 1}}]}})

    def _authorizer_token(self, body: dict):
        authorizer = body.get("authorizer_appid", "")
        with self._lock:
            self.authorizer_calls[authorizer] += 1
            current = self.refresh_tokens.get(authorizer)
            if current is None or body.get("authorizer_refresh_token") != current:
                return _json({"errcode": 61023, "errmsg": "refresh_token is invalid"})
            refresh = self._new_refresh_token(authorizer) if self.rotate_refresh else current
        token = self.wechat.mint(authorizer, self.authorizer_expires_in)
        return _json({"authorizer_access_token": token, "expires_in": self.authorizer_expires_in,
                      "authorizer_refresh_token": refresh})

    def _authorizer_list(self, body: dict):
        with self._lock:
            rows = [{"authorizer_appid": appid, "refresh_token": refresh,
                     "auth_time": int(time.time())}
                    for appid, refresh in sorted(self.listed_refresh.items())]
        offset, count = int(body.get("offset", 0)), int(body.get("count", 500))
        return _json({"total_count": len(rows), "list": rows[offset:offset + count]})

    def _authorizer_info(self, body: dict):
        # As WeChat's: the authorization's refresh token comes with it.
        authorizer = body.get("authorizer_appid", "")
        with self._lock:
            refresh = self.refresh_tokens.get(authorizer, "")
        answer = _json({"authorizer_info": {"nick_name": "fake authorizer",
                                            "service_type_info": {"id": 2}},
                        "authorization_info": {"authorizer_appid": authorizer,
                                               "authorizer_refresh_token": refresh}})
        if self.raw_nick_name is None:
            return answer
        status, content_type, text = answer
        return status, content_type, text.replace("fake authorizer", self.raw_nick_name)
