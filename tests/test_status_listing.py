"""The `/status` listing: one registry call a page whatever the page size (the summaries each
account's object reports when something changes), never a Durable Object call per account;
accurate once the object has reported; and for a key limited to some accounts, a listing of
its own accounts whose cursor names nothing else."""

import base64
import hashlib
import time

from harness import CLIENT_KEY, wait_for
from test_admin import ADMIN_KEY, RT_KEY, admin, admin_vars, register, runtime_apps  # noqa: F401
from test_api import assert_error


def fingerprint(value):
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def listing(worker, path="/status?limit=100", key=CLIENT_KEY):
    reply = worker.request("GET", path, key=key)
    assert reply.status == 200, reply.text
    return reply.json


def object_requests(worker):
    return [(e["object"], e["op"]) for e in worker.events("object_request")]


def test_a_page_costs_one_registry_call_whatever_its_size(start_worker, fake):
    worker = start_worker(**admin_vars(fake, TEST_LOG_OBJECT_REQUESTS="1"))
    for n in range(1, 6):
        assert register(worker, f"rt{n}", n).status == 201
    tokens = {f"rt{n}": worker.request("GET", f"/token?account=rt{n}").json["access_token"]
              for n in (1, 2, 3)}

    polls = 0

    def reported():
        nonlocal polls
        polls += 1
        shown = {e["account"]: e for e in listing(worker)["accounts"]}
        return all((shown[i]["token"] or {}).get("fingerprint") == fingerprint(t)
                   for i, t in tokens.items())
    assert wait_for(reported, 10), listing(worker)
    # A line can reach the log after its answer: every poll's in before the counts start.
    assert wait_for(lambda: object_requests(worker).count(("registry", "statuses")) >= polls, 5)

    def asked_since(before):
        """What was asked of the objects since `before`, waiting for the first line (an
        object's own report to the registry, made after its answers, is no one's request)."""
        def asked():
            return [r for r in object_requests(worker)[before:] if r != ("registry", "report")]
        assert wait_for(asked, 5), "nothing asked"
        time.sleep(0.3)  # and a second request, were there one
        return asked()

    for path in ("/status?limit=100", "/status?limit=2", "/status"):
        before = len(object_requests(worker))
        body = listing(worker, path)
        assert body["accounts"]
        assert asked_since(before) == [("registry", "statuses")], path

    before = len(object_requests(worker))
    shown = {e["account"]: e for e in listing(worker)["accounts"]}
    # Its line can reach the log after the answer: in before the next count starts.
    assert wait_for(lambda: ("registry", "statuses") in object_requests(worker)[before:], 5)
    assert set(shown) == {fake.appid, "rt1", "rt2", "rt3", "rt4", "rt5"}
    rt1 = shown["rt1"]
    assert rt1["kind"] == "official_account" and rt1["upstream_calls_today"] == 1
    assert abs(rt1["token"]["expires_in"] - (rt1["token"]["expires_at"] - time.time())) <= 2
    assert 7190 <= rt1["token"]["expires_in"] <= 7200
    assert abs(rt1["reported_at"] - time.time()) < 10 and rt1["alerts"] == []
    # Never visited since it was configured: listed, with nothing reported.
    main = shown[fake.appid]
    assert main["reported_at"] is None and main["token"] is None
    for token in tokens.values():
        assert token not in str(shown)

    # One account by name is asked of its object, live.
    before = len(object_requests(worker))
    live = listing(worker, "/status?account=rt1")["accounts"][0]
    assert asked_since(before) == [("account", "status")]
    assert live["token"]["fingerprint"] == rt1["token"]["fingerprint"]
    assert "reported_at" not in live

    # A deleted account leaves the listing with its summary.
    assert admin(worker, "DELETE", "/admin/accounts/rt2").status == 204
    assert "rt2" not in {e["account"] for e in listing(worker)["accounts"]}


def test_a_limited_key_pages_through_its_own_accounts_only(start_worker, fake):
    worker = start_worker(**admin_vars(fake, CLIENT_KEYS=f"{CLIENT_KEY},{RT_KEY}@rt2+rt4+rt9"))
    for n in range(1, 6):
        assert register(worker, f"rt{n}", n).status == 201
    seen, texts, cursor = [], [], None
    while True:
        path = "/status?limit=1" + (f"&cursor={cursor}" if cursor else "")
        body = listing(worker, path, key=RT_KEY)
        seen += [e["account"] for e in body["accounts"]]
        texts.append(str(body))
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert "rt" not in base64.urlsafe_b64decode(cursor + "==").decode()
    assert seen == ["rt2", "rt4"], "rt9 does not exist: not listed"
    for other in ("rt1", "rt3", "rt5", fake.appid, "wxruntime000000001"):
        assert all(other not in text for text in texts)
    # The full listing's cursor means nothing to it, nor its cursor to the full listing.
    full = listing(worker, "/status?limit=1")["next_cursor"]
    assert_error(worker.request("GET", f"/status?cursor={full}", key=RT_KEY), 400, "bad_request")
    mine = listing(worker, "/status?limit=1", key=RT_KEY)["next_cursor"]
    assert_error(worker.request("GET", f"/status?cursor={mine}"), 400, "bad_request")
    assert_error(worker.request("GET", "/status?cursor=r.rt1"), 400, "bad_request")
