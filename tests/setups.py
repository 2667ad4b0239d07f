"""Accounts beside the fake's main app, shared by the multi-account, ticket and SDK tests. The
session's fake WeChat server knows all of them (conftest.py)."""

import json

from harness import CLIENT_KEY

SECOND = ("wxsecond0000000000", "fake-secret-second-0123456789")
CORP = ("wwcorp000000000000", "fake-secret-corp-app-0123456789")
STABLE = ("wxstable0000000000", "fake-secret-stable-0123456789")
SCOPED_KEY = "scoped-client-key-0123456789"


def accounts_json(*extra):
    return json.dumps([
        {"id": "second", "kind": "official_account", "appid": SECOND[0], "secret": SECOND[1]},
        {"id": "corp-app", "kind": "wecom", "appid": CORP[0], "secret": CORP[1]},
        {"id": "shop", "kind": "mini_program", "appid": STABLE[0], "secret": STABLE[1],
         "api": "stable"},
        *extra,
    ])


def several(fake, **overrides):
    """Vars for a worker serving the fake's main app (the default) and the three above."""
    return {
        "WECHAT_ACCOUNTS": accounts_json(),
        "WECOM_API_BASE": fake.base_url,
        "CLIENT_KEYS": f"{CLIENT_KEY},{SCOPED_KEY}@second+corp-app",
        **overrides,
    }


EXTRA_APPS = (SECOND, CORP, STABLE)
