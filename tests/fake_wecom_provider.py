"""WeCom's service-provider side on the fake (企业微信服务商), written from WeCom's documentation
and apart from the worker's code:

- WeCom pushes a suite ticket to each suite's 指令回调URL every ten minutes (here: when a test
  calls `push_suite_ticket`), sealed with the suite's EncodingAESKey for the suite id as
  receive id (`wechat_push`'s own crypto); a ticket works for 30 minutes from its TimeStamp,
  and only for its own suite (40085 otherwise).
- `POST /cgi-bin/service/get_suite_token` `{suite_id, suite_secret, suite_ticket}` and
  `POST /cgi-bin/service/get_provider_token` `{corpid, provider_secret}` answer `errcode` only
  on failure ("因历史原因，该接口在调用失败时才返回errcode"), and, while the token they issued is
  valid, that same token again with the full lifetime announced; it still dies at its first
  expiry (documented for suite tokens: "在一定时间段内返回的token值一样").
- The URL check (`GET …?msg_signature&timestamp&nonce&echostr`) is sealed for the provider's
  corpid.
- A corporation's authorization pushes a single-use AuthCode (64 to 512 bytes);
  `POST /cgi-bin/service/v2/get_permanent_code?suite_access_token=` `{auth_code}` exchanges it
  once for the permanent code and `auth_corp_info.corpid` (40078 for a code spent or unknown);
  `POST /cgi-bin/service/get_corp_token?suite_access_token=` `{auth_corpid, permanent_code}`
  answers the corporation's token (40084 once the permanent code is revoked);
  `POST /cgi-bin/service/v2/get_auth_info?suite_access_token=` `{auth_corpid, permanent_code}`
  answers `auth_corp_info` and `auth_info.agent` (the suite's app in the corporation: its
  `agentid`, which WeCom assigns per corporation, and its name). All three need a valid suite
  token of the suite the corporation authorized (40082 otherwise).
- A corporation that changes what it authorized (a test's `change_app`) is told by a
  `change_auth` push, which carries its corpid and no code."""

from __future__ import annotations

import json
import secrets
import threading
import time
from urllib.parse import urlencode

from wechat_push import encrypt, new_encoding_aes_key, signature

SUITE_TICKET_LIFE_SECS = 30 * 60
SUITE_ID = "wwfakesuite00000001"
DK_SUITE_ID = "dkfaketemplate0001"
PROVIDER_CORPID = "wwfakeprovider00001"
PROVIDER_SECRET = "fake-provider-secret-0123456789"


def _json(payload: dict, status: int = 200):
    return status, "application/json", json.dumps(payload, ensure_ascii=False)


class FakeSuite:
    def __init__(self, suite_id: str):
        self.suite_id = suite_id
        self.secret = f"fake-suite-secret-{suite_id[-4:]}-0123456789"
        self.token = f"push-token-{suite_id[-4:]}"
        self.encoding_aes_key = new_encoding_aes_key()

    def config(self) -> dict:
        return {"suite_id": self.suite_id, "suite_secret": self.secret, "token": self.token,
                "encoding_aes_key": self.encoding_aes_key}


class FakeWeComProvider:
    def __init__(self):
        self._lock = threading.Lock()
        self.suites = {s.suite_id: s for s in (FakeSuite(SUITE_ID), FakeSuite(DK_SUITE_ID))}
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.expires_in = 7200
            # ticket -> (suite id, TimeStamp)
            self.tickets: dict[str, tuple[str, int]] = {}
            # token -> (owner, expires at); owner: a suite id, or the provider's corpid
            self.tokens: dict[str, tuple[str, float]] = {}
            self.token_calls: list[dict] = []  # each call: endpoint, owner, ticket known
            self.sent_tickets: list[str] = []  # the suite tickets get_suite_token received
            self.modes: dict[str, str] = {}
            # auth code -> (suite id, corpid), until exchanged; corpid -> permanent code
            self.auth_codes: dict[str, tuple[str, str]] = {}
            self.spent_codes: list[str] = []
            # (suite id, corpid) -> its permanent code: one per suite a corporation installed
            self.permanent_codes: dict[tuple[str, str], str] = {}
            self.issued_permanent: list[str] = []
            # (suite id, corpid) -> the suite's app in that corporation: agentid, name
            self.apps: dict[tuple[str, str], dict] = {}
            self.auth_info_calls = 0
            self.exchanges = 0
            # Each API call: its path, the owner of the token it carried, its query's keys.
            self.api_calls: list[dict] = []

    def worker_vars(self) -> dict[str, str]:
        return {
            "WECOM_SUITES": json.dumps([s.config() for s in self.suites.values()]),
            "WECOM_PROVIDER": json.dumps({"corpid": PROVIDER_CORPID,
                                          "provider_secret": PROVIDER_SECRET}),
        }

    # What WeCom sends to the provider's URLs.

    def new_ticket(self, suite_id: str, timestamp: int | None = None) -> tuple[str, int]:
        timestamp = int(time.time()) if timestamp is None else timestamp
        ticket = f"SUITE-TICKET-{secrets.token_urlsafe(24)}"
        with self._lock:
            self.tickets[ticket] = (suite_id, timestamp)
        return ticket, timestamp

    def sealed(self, suite_id: str, message: str, receive_id: str | None = None,
               token: str | None = None) -> tuple[str, str]:
        """The query and the body WeCom posts to a suite's 指令回调URL."""
        suite = self.suites[suite_id]
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
        encrypted = encrypt(message, suite.encoding_aes_key, receive_id or suite_id)
        sign = signature(token or suite.token, timestamp, nonce, encrypted)
        query = urlencode({"msg_signature": sign, "timestamp": timestamp, "nonce": nonce})
        body = (f"<xml><ToUserName><![CDATA[{suite_id}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
                "<AgentID><![CDATA[]]></AgentID></xml>")
        return query, body

    def url_check(self, suite_id: str, echo: str, receive_id: str = PROVIDER_CORPID) -> str:
        """The query of WeCom's check of a suite's URL: `echostr` sealed for `receive_id`."""
        suite = self.suites[suite_id]
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
        echostr = encrypt(echo, suite.encoding_aes_key, receive_id)
        sign = signature(suite.token, timestamp, nonce, echostr)
        return urlencode({"msg_signature": sign, "timestamp": timestamp, "nonce": nonce,
                          "echostr": echostr})

    def authorize_corp(self, suite_id: str, corpid: str) -> str:
        """A corporation installs the suite's app: the AuthCode WeCom pushes."""
        code = f"AUTHCODE-{secrets.token_urlsafe(48)}"
        with self._lock:
            self.auth_codes[code] = (suite_id, corpid)
        return code

    def revoke(self, corpid: str, suite_id: str = SUITE_ID) -> None:
        with self._lock:
            self.permanent_codes.pop((suite_id, corpid), None)

    @staticmethod
    def auth_message(suite_id: str, info_type: str, timestamp: int | None = None,
                     code: str = "", corpid: str = "") -> str:
        timestamp = int(time.time()) if timestamp is None else timestamp
        parts = [f"<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId>",
                 f"<InfoType><![CDATA[{info_type}]]></InfoType>",
                 f"<TimeStamp>{timestamp}</TimeStamp>"]
        if code:
            parts.append(f"<AuthCode><![CDATA[{code}]]></AuthCode><State><![CDATA[s]]></State>")
        if corpid:
            parts.append(f"<AuthCorpId><![CDATA[{corpid}]]></AuthCorpId>")
        return "".join(parts) + "</xml>"

    @staticmethod
    def ticket_message(suite_id: str, ticket: str, timestamp: int) -> str:
        return (f"<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId>"
                "<InfoType> <![CDATA[suite_ticket]]></InfoType>"
                f"<TimeStamp>{timestamp}</TimeStamp>"
                f"<SuiteTicket><![CDATA[{ticket}]]></SuiteTicket></xml>")

    # WeCom's API.

    def handle(self, path: str, query: dict[str, str], raw: bytes):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _json({"errcode": 47001, "errmsg": "data format error"})
        if path == "/cgi-bin/service/get_suite_token":
            return self._suite_token(body)
        if path == "/cgi-bin/service/get_provider_token":
            return self._provider_token(body)
        suite_id = self._suite_of(query.get("suite_access_token", ""))
        if path in ("/cgi-bin/service/v2/get_permanent_code", "/cgi-bin/service/get_corp_token",
                    "/cgi-bin/service/v2/get_auth_info"):
            if suite_id is None:
                return _json({"errcode": 40082, "errmsg": "invalid suite_access_token"})
            if path == "/cgi-bin/service/get_corp_token":
                return self._corp_token(suite_id, body)
            if path == "/cgi-bin/service/v2/get_auth_info":
                return self._auth_info(suite_id, body)
            return self._permanent_code(suite_id, body.get("auth_code", ""))
        return _json({"errcode": 404, "errmsg": "not found"}, status=404)

    # A suite's call and a corporation's (WeCom's own API, with their tokens).
    API_PATHS = ("/cgi-bin/service/get_pre_auth_code", "/cgi-bin/agent/get")

    def handle_get(self, path: str, query: dict[str, str]):
        name = "suite_access_token" if path.startswith("/cgi-bin/service/") else "access_token"
        token = query.get(name, "")
        with self._lock:
            issued = self.tokens.get(token)
            owner = issued[0] if issued and time.time() < issued[1] else None
            self.api_calls.append({"path": path, "owner": owner, "keys": sorted(query)})
        if owner is None:
            errcode = 40082 if name == "suite_access_token" else 40014
            return _json({"errcode": errcode, "errmsg": f"invalid {name}"})
        if path == "/cgi-bin/service/get_pre_auth_code":
            return _json({"errcode": 0, "errmsg": "ok", "expires_in": 1200,
                          "pre_auth_code": f"PREAUTH-{owner}"})
        return _json({"errcode": 0, "errmsg": "ok", "agentid": int(query.get("agentid", 0)),
                      "name": f"app of {owner}"})

    def corp_of(self, token: str) -> str | None:
        """The corporation a valid corporation token was issued to."""
        with self._lock:
            issued = self.tokens.get(token)
        valid = issued and time.time() < issued[1] and issued[0] not in self.suites
        return issued[0] if valid and issued[0] != PROVIDER_CORPID else None

    def expire_tokens(self, owner: str) -> None:
        """WeCom drops the tokens it issued to `owner` (a secret reset, say)."""
        with self._lock:
            for token, (issued_to, _) in list(self.tokens.items()):
                if issued_to == owner:
                    self.tokens[token] = (issued_to, 0)

    def _suite_of(self, token: str) -> str | None:
        with self._lock:
            issued = self.tokens.get(token)
        if issued and issued[0] in self.suites and time.time() < issued[1]:
            return issued[0]
        return None

    def _permanent_code(self, suite_id: str, code: str):
        with self._lock:
            self.exchanges += 1
            owner = self.auth_codes.get(code)
            if owner is None or owner[0] != suite_id or not 64 <= len(code) <= 512:
                return _json({"errcode": 40078, "errmsg": "invalid auth_code"})
            del self.auth_codes[code]  # single-use
            self.spent_codes.append(code)
            corpid = owner[1]
            permanent = f"PERMANENT-{secrets.token_urlsafe(24)}"
            self.permanent_codes[(suite_id, corpid)] = permanent
            self.issued_permanent.append(permanent)
            self.apps.setdefault((suite_id, corpid), {
                "agentid": 1000000 + secrets.randbelow(900000), "name": "Fake App"})
        return _json({"errcode": 0, "errmsg": "ok", "permanent_code": permanent,
                      "auth_corp_info": {"corpid": corpid, "corp_name": "Fake Corp"},
                      "auth_user_info": {"userid": "admin", "name": "Admin"},
                      "state": "s"})

    def _corp_token(self, suite_id: str, body: dict):
        corpid = body.get("auth_corpid", "")
        with self._lock:
            self.token_calls.append({"endpoint": "get_corp_token", "owner": corpid,
                                     "ticket_known": None})
            # The permanent code of this corporation for the suite whose token came.
            permanent = self.permanent_codes.get((suite_id, corpid))
        if permanent is None or body.get("permanent_code") != permanent:
            return _json({"errcode": 40084, "errmsg": "invalid permanent_code"})
        return self._issue(corpid, "access_token", "CORP")

    def _auth_info(self, suite_id: str, body: dict):
        corpid = body.get("auth_corpid", "")
        with self._lock:
            self.auth_info_calls += 1
            permanent = self.permanent_codes.get((suite_id, corpid))
            app = dict(self.apps.get((suite_id, corpid), {}))
        if permanent is None or body.get("permanent_code") != permanent:
            return _json({"errcode": 40084, "errmsg": "invalid permanent_code"})
        return _json({"errcode": 0, "errmsg": "ok",
                      "auth_corp_info": {"corpid": corpid, "corp_name": "Fake Corp",
                                         "corp_type": "verified", "corp_user_max": 50},
                      "auth_info": {"agent": [{**app, "auth_mode": 0,
                                               "privilege": {"level": 1, "allow_party": [1]}}]}})

    def change_app(self, corpid: str, name: str, suite_id: str = SUITE_ID) -> None:
        """The corporation's administrator changes the app (its name, its visible range)."""
        with self._lock:
            self.apps[(suite_id, corpid)]["name"] = name

    def agentid(self, corpid: str, suite_id: str = SUITE_ID) -> int:
        with self._lock:
            return self.apps[(suite_id, corpid)]["agentid"]

    def _suite_token(self, body: dict):
        suite_id, ticket = body.get("suite_id"), body.get("suite_ticket", "")
        with self._lock:
            self.token_calls.append({"endpoint": "get_suite_token", "owner": suite_id,
                                     "ticket_known": ticket in self.tickets})
            self.sent_tickets.append(ticket)
        suite = self.suites.get(suite_id)
        if suite is None:
            return _json({"errcode": 40083, "errmsg": "invalid suite_id"})
        if body.get("suite_secret") != suite.secret:
            return _json({"errcode": 40001, "errmsg": "invalid secret"})
        issued = self.tickets.get(ticket)
        fresh = issued and time.time() < issued[1] + SUITE_TICKET_LIFE_SECS
        if not fresh or issued[0] != suite_id:
            return _json({"errcode": 40085, "errmsg": f"invalid suite_ticket {ticket}, hint: "
                          "[1700000000_85_fake], more info at https://open.work.weixin.qq.com"
                          "/devtool/query?e=40085"})
        return self._issue(suite_id, "suite_access_token", "SUITE")

    def _provider_token(self, body: dict):
        with self._lock:
            self.token_calls.append({"endpoint": "get_provider_token",
                                     "owner": body.get("corpid"), "ticket_known": None})
        if body.get("corpid") != PROVIDER_CORPID:
            return _json({"errcode": 40013, "errmsg": "invalid corpid"})
        if body.get("provider_secret") != PROVIDER_SECRET:
            return _json({"errcode": 40001, "errmsg": "invalid secret"})
        return self._issue(PROVIDER_CORPID, "provider_access_token", "PROVIDER")

    def _issue(self, owner: str, field: str, prefix: str):
        if self.modes.get(owner) == "busy":
            return _json({"errcode": -1, "errmsg": "system busy"})
        now = time.time()
        with self._lock:
            held = [t for t, (o, until) in self.tokens.items() if o == owner and until > now]
            if held:
                token = held[0]
            else:
                token = f"{prefix}-{owner}-{secrets.token_hex(8)}"
                self.tokens[token] = (owner, now + self.expires_in)
        # No errcode: WeCom's way for these calls.
        return _json({field: token, "expires_in": self.expires_in})

    @property
    def all_secrets(self) -> list[str]:
        return [PROVIDER_SECRET, *(value for s in self.suites.values()
                                   for value in (s.secret, s.token, s.encoding_aes_key)),
                *self.auth_codes, *self.spent_codes, *self.issued_permanent]

    def is_valid(self, token: str, owner: str) -> bool:
        with self._lock:
            issued = self.tokens.get(token)
        return bool(issued) and issued[0] == owner and time.time() < issued[1]

    def calls(self, endpoint: str) -> int:
        with self._lock:
            return sum(1 for c in self.token_calls if c["endpoint"] == endpoint)
