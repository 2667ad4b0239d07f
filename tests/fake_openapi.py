"""WeChat's API management on the fake (openApi 管理), by WeChat's documented rules and apart
from the worker's code: every error answer carries a rid that `rid/get` looks up for the same
account only (76003 for another's), an API's quota counts the calls the fake really served
today, and an account's quota can be cleared 10 times a calendar month (Beijing time), the 11th
answered 48006."""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections import Counter

CLEARS_PER_MONTH = 10
# Paths whose quota the fake knows; /sns/ APIs are not metered (76022), others unknown (76021).
DAILY_LIMITS = {
    "/cgi-bin/token": 2000,
    "/cgi-bin/stable_token": 10000,
    "/cgi-bin/getcallbackip": 10000,
    "/cgi-bin/message/custom/send": 500000,
    "/cgi-bin/user/info": 5000000,
    "/cgi-bin/user/get": 500000,
    "/cgi-bin/media/upload": 100000,
}
TOKEN_PATHS = ("/cgi-bin/token", "/cgi-bin/stable_token")
OPENAPI_PATHS = ("/cgi-bin/openapi/quota/get", "/cgi-bin/openapi/rid/get",
                 "/cgi-bin/clear_quota/v2", "/cgi-bin/component/clear_quota/v2")


def _json(payload: dict, status: int = 200):
    return status, "application/json", json.dumps(payload, ensure_ascii=False)


def beijing_month(at: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(at + 8 * 3600))


class FakeOpenApi:
    def __init__(self, wechat):
        self.wechat = wechat
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.limits = dict(DAILY_LIMITS)
            self.records: dict[str, tuple[str | None, dict]] = {}  # rid -> (owner, request)
            self.clears: Counter[tuple[str, str]] = Counter()  # (appid, month) -> clears
            self.clear_calls: list[dict] = []  # each clear request, secrets masked
            self.quota_calls = 0
            self.rid_calls = 0
            # Every request as it came, refused ones too: its path, token and appid.
            self.requests: list[dict] = []
            self._cleared_at: dict[str, tuple[int, int]] = {}  # appid -> counts at its clear

    # What the fake's other answers do.

    def record(self, owner: str | None, request_url: str, request_body: str,
               answer: dict) -> str:
        """Keeps a failed call for `rid/get`, its errmsg ended with the rid; the answer's body."""
        rid = f"{secrets.token_hex(4)}-{secrets.token_hex(4)}-{next(self._serial):08x}"
        answer = {**answer, "errmsg": f"{answer.get('errmsg', '')} rid: {rid}"}
        response_body = json.dumps(answer, ensure_ascii=False)
        with self._lock:
            self.records[rid] = (owner, {
                "invoke_time": int(time.time()), "cost_in_ms": 3,
                "request_url": request_url, "request_body": request_body,
                "response_body": response_body, "client_ip": "203.0.113.7"})
        return response_body

    # The API.

    def handle(self, path: str, query: dict[str, str], raw: bytes):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _json({"errcode": 47001, "errmsg": "data format error"})
        with self._lock:
            self.requests.append({"path": path, "access_token": query.get("access_token", ""),
                                  "appid": body.get("appid") or body.get("component_appid")})
        if path == "/cgi-bin/clear_quota/v2":
            return self._clear(body.get("appid"), body.get("appsecret"), component=False)
        if path == "/cgi-bin/component/clear_quota/v2":
            return self._component_clear(body)
        owner = self._owner(query.get("access_token", ""))
        if owner is None:
            return self.wechat.token_rejection()
        if path == "/cgi-bin/openapi/quota/get":
            return self._quota(owner, body.get("cgi_path"))
        if path == "/cgi-bin/openapi/rid/get":
            return self._rid(owner, body.get("rid"))
        return _json({"errcode": 404, "errmsg": "not found"}, status=404)

    def _owner(self, token: str) -> str | None:
        if self.wechat.is_valid(token):
            return self.wechat.token_owner(token)
        if self.wechat.platform.component_token_valid(token):
            return self.wechat.platform.appid
        return None

    def _quota(self, owner: str, cgi_path):
        with self._lock:
            self.quota_calls += 1
        if not isinstance(cgi_path, str) or not cgi_path.startswith("/"):
            return _json({"errcode": 76003, "errmsg": "cgi_path format error"})
        if "/sns/" in cgi_path:
            return _json({"errcode": 76022, "errmsg": "could not use this cgi_path,no permission"})
        if cgi_path not in self.limits:
            return _json({"errcode": 76021, "errmsg": "cgi_path not found, please check"})
        used = self.used(owner, cgi_path)
        limit = self.limits[cgi_path]
        return _json({"errcode": 0, "errmsg": "ok",
                      "quota": {"daily_limit": limit, "used": used, "remain": max(limit - used, 0)},
                      "rate_limit": {"call_count": 100, "refresh_second": 60}})

    def used(self, appid: str, cgi_path: str) -> int:
        """The calls of `cgi_path` the fake served to `appid` since its last clear."""
        fake = self.wechat
        with fake._lock:
            api_index, token_calls = self._cleared_at.get(appid, (0, 0))
            if cgi_path in TOKEN_PATHS:
                endpoint = cgi_path.rsplit("/", 1)[-1]  # "token" or "stable_token"
                return sum(1 for r in fake.requests[token_calls:]
                           if r.get("endpoint") == endpoint and r.get("appid") == appid)
            return sum(1 for r in fake.api_requests[api_index:]
                       if r["path"] == cgi_path and r["token_appid"] == appid)

    def _rid(self, owner: str, rid):
        with self._lock:
            self.rid_calls += 1
            if not isinstance(rid, str) or not rid:
                return _json({"errcode": 76002, "errmsg": "rid is error"})
            found = self.records.get(rid)
        if found is None:
            return _json({"errcode": 76001, "errmsg": "rid not found"})
        if found[0] != owner:
            return _json({"errcode": 76003, "errmsg": "could not query this rid,no permission"})
        return _json({"errcode": 0, "errmsg": "ok", "request": found[1]})

    def _component_clear(self, body: dict):
        platform = self.wechat.platform
        if body.get("component_appid") != platform.appid:
            return _json({"errcode": 40013, "errmsg": "invalid appid"})
        if body.get("appsecret") != platform.secret:
            return _json({"errcode": 40125, "errmsg": "invalid appsecret"})
        appid = body.get("appid") or platform.appid
        if appid != platform.appid and appid not in platform.refresh_tokens:
            return _json({"errcode": 61003, "errmsg": "component is not authorized by this account"})
        return self._clear(appid, None, component=True)

    def _clear(self, appid, appsecret, component: bool):
        fake = self.wechat
        with self._lock:
            self.clear_calls.append({"appid": appid, "component": component})
        if not appid:
            return _json({"errcode": 41002, "errmsg": "appid missing"})
        if not component:
            if not appsecret:
                return _json({"errcode": 41004, "errmsg": "appsecret missing"})
            if appid not in fake.apps:
                return _json({"errcode": 40013, "errmsg": "invalid appid"})
            if fake.apps[appid] != appsecret:
                return _json({"errcode": 40125, "errmsg": "invalid appsecret"})
        month = beijing_month(time.time())
        with self._lock:
            if self.clears[(appid, month)] >= CLEARS_PER_MONTH:
                return _json({"errcode": 48006,
                              "errmsg": "forbid to clear quota because of reaching the limit"})
            self.clears[(appid, month)] += 1
        with fake._lock:
            self._cleared_at[appid] = (len(fake.api_requests), len(fake.requests))
            if fake.modes.get(appid, fake.mode) == "quota":
                fake.modes[appid] = "ok"
        return _json({"errcode": 0, "errmsg": "ok"})
