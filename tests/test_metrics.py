"""`GET /metrics`: Prometheus's text format, read back with the Prometheus client library's own
parser and checked with `promtool` (Debian's prometheus package), from the accounts' summaries
in one registry call whatever the number of accounts. The refusals come first."""

import json
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import CLIENT_KEY, wait_for
from setups import SCOPED_KEY, SECOND, several
from test_alerts import alert_vars, receiver  # noqa: F401 (the webhook fixture)
from test_api import assert_error

ADMIN_KEY = "admin-key-for-metrics-0123456789abcdef"
STATUS_KEY = "status-only-key-0123456789"
PREFIX = "wechat_token_edge_"


def scrape(worker, path="/metrics", key=CLIENT_KEY):
    reply = worker.request("GET", path, key=key)
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    return reply.text, families


def samples(families, name, **labels):
    """The samples of family `name` (without the prefix) whose labels include `labels`. The
    parser names a counter's family without its `_total`."""
    family = families.get(PREFIX + name.removesuffix("_total"))
    found = [] if family is None else family.samples
    return [s for s in found if all(s.labels.get(k) == v for k, v in labels.items())]


def value(families, name, **labels):
    found = samples(families, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0].value


def everything_names(worker):
    return set(scrape(worker)[1])


def object_requests(worker):
    return [(e["object"], e["op"]) for e in worker.events("object_request")]


def test_refusals(start_worker, fake):
    worker = start_worker(**several(fake, ADMIN_KEYS=ADMIN_KEY,
                                    CLIENT_KEYS=f"{CLIENT_KEY},{STATUS_KEY}:status,{SCOPED_KEY}@second"))
    assert_error(worker.request("GET", "/metrics", key=None), 401, "unauthorized")
    assert_error(worker.request("GET", "/metrics", key="wrong-key-0123456789abc"), 401,
                 "unauthorized")
    assert_error(worker.request("GET", "/metrics", key=STATUS_KEY), 403, "forbidden_route")
    assert_error(worker.request("GET", "/metrics?page=-1"), 400, "bad_request")
    assert_error(worker.request("GET", "/metrics?page=x"), 400, "bad_request")
    assert_error(worker.request("POST", "/metrics", body="{}"), 405, "method_not_allowed")
    # A key limited to some accounts sees those only, and nothing of the server's.
    assert worker.request("GET", "/token?account=second").status == 200
    text, families = scrape(worker, key=SCOPED_KEY)
    shown = {s.labels["account"] for s in samples(families, "account_state")}
    assert shown == {"second"}
    assert PREFIX + "gateway_calls" in everything_names(worker)
    assert not samples(families, "gateway_calls_total")
    assert value(families, "accounts", page="0", state="healthy") == 1, "its own account only"
    _, everything = scrape(worker, key=ADMIN_KEY)  # an admin key reads every account
    assert {s.labels["account"] for s in samples(everything, "account_state")} == {
        fake.appid, "second", "corp-app", "shop"}


def test_what_the_server_did_is_counted(start_worker, fake):
    worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0"))
    token = worker.request("GET", "/token").json["access_token"]
    assert worker.request("POST", "/token/refresh", body=json.dumps({"stale_token": token})).status == 200
    assert worker.request("GET", "/token?account=shop").status == 200
    fake.modes[SECOND[0]] = "busy"
    assert_error(worker.request("GET", "/token?account=second"), 502, "wechat_error")
    sent = worker.request("GET", "/gateway/cgi-bin/getcallbackip")
    assert sent.status == 200, sent.text

    def scraped():
        text, families = scrape(worker)
        return families if samples(families, "gateway_calls_total", status_class="2xx") else None
    assert wait_for(scraped, 10), "the gateway's count reached the registry"
    families = scraped()
    main = {"account": fake.appid, "kind": "official_account", "api": "classic"}
    assert value(families, "refreshes_total", credential="token", outcome="ok", **main) == 2
    assert value(families, "upstream_calls_total", credential="token", outcome="ok", **main) == 2
    assert fake.calls_for(fake.appid) == 2
    failing = {"account": "second"}
    # Each of the refresh's calls (its retries) was counted, and the refresh once.
    assert value(families, "upstream_calls_total", credential="token", outcome="wechat_error",
                 **failing) == fake.calls_for(SECOND[0]) >= 1
    assert value(families, "refreshes_total", credential="token", outcome="failed", **failing) == 1
    assert 7100 < value(families, "token_expires_in_seconds", **main) <= 7200
    assert value(families, "upstream_calls_today", **main) == 2
    assert value(families, "explicit_refreshes_today", **main) == 1
    assert value(families, "daily_quota", **main) == 2000
    assert value(families, "quota_clears_left", **main) == 10
    assert value(families, "kv_write_failures_total", **main) == 0
    assert value(families, "gateway_calls_total", status_class="2xx") == 1
    states = {s.labels["account"]: s.labels["state"] for s in samples(families, "account_state")}
    assert states == {fake.appid: "healthy", "shop": "healthy", "second": "failing",
                      "corp-app": "refreshing"}
    assert value(families, "accounts", page="0", state="healthy") == 2
    assert value(families, "accounts", page="0", state="failing") == 1
    assert value(families, "accounts", page="0", state="refreshing") == 1
    # Counters only go up: a later refresh adds to them.
    token = worker.request("GET", "/token").json["access_token"]
    assert worker.request("POST", "/token/refresh", body=json.dumps({"stale_token": token})).status == 200

    def refreshed_thrice():
        return value(scraped(), "refreshes_total", credential="token", outcome="ok", **main) == 3
    assert wait_for(refreshed_thrice, 10)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_finds_nothing_to_fix(start_worker, fake):
    worker = start_worker(**several(fake))
    assert worker.request("GET", "/token").status == 200
    assert worker.request("GET", "/gateway/cgi-bin/getcallbackip").status == 200
    text, _ = scrape(worker)
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked


def test_a_thousand_accounts_a_page_in_one_registry_call(start_worker, fake):
    accounts = [{"id": f"acct{n:04d}", "kind": "official_account", "appid": f"wxscale{n:011d}",
                 "secret": f"fake-secret-scale-{n:04d}-0123456789"} for n in range(1000)]
    worker = start_worker(WECHAT_ACCOUNTS=json.dumps(accounts), TEST_LOG_OBJECT_REQUESTS="1")
    assert worker.request("GET", "/healthz").status == 200

    def cost_of(path):
        """The object requests `path` made: those logged before a marker request's own line
        (the log can lag behind an answer)."""
        before = len(object_requests(worker))
        reply = scrape(worker, path)
        assert worker.request("GET", "/status?account=acct0000").status == 200
        marker = ("account", "status")
        assert wait_for(lambda: marker in object_requests(worker)[before:], 5)
        # The marker's object reports to the registry after its answer, maybe after the
        # next call's `before`: an object's own report is no request of the scrape's.
        made = [m for m in object_requests(worker)[before:] if m != ("registry", "report")]
        return reply, made[:made.index(marker)]

    (text, families), made = cost_of("/metrics")
    assert made == [("registry", "statuses")]
    first = {s.labels["account"] for s in samples(families, "account_state")}
    assert len(first) == 1000
    assert value(families, "accounts", page="0", state="refreshing") == 1000
    (_, second_page), made = cost_of("/metrics?page=1")
    assert made == [("registry", "statuses")]
    rest = {s.labels["account"] for s in samples(second_page, "account_state")}
    assert len(rest) == 1 and not rest & first, "1,001 accounts: the last one on page 1"
    # Each page counts its own accounts, labelled with the page: the sum is the server's.
    assert value(second_page, "accounts", page="1", state="refreshing") == 1
    assert not samples(second_page, "gateway_calls_total"), "the server's counters on page 0"


def test_a_failed_kv_write_is_counted_and_the_count_outlives_a_restart(start_worker, fake):
    # Each KV key takes its first write only: the refreshed token's write fails.
    worker = start_worker(TEST_FAIL_KV_WRITES="2-", MIN_REFRESH_INTERVAL_SECS="0")
    token = worker.get_token().json["access_token"]
    assert worker.refresh(stale_token=token).status == 200
    assert wait_for(lambda: worker.events("kv_write_failed"), 10)

    def failures():
        _, families = scrape(worker)
        found = samples(families, "kv_write_failures_total", account=fake.appid)
        return found[0].value if found else 0
    assert wait_for(lambda: failures() >= 1, 10), failures()
    counted = failures()
    # The count is in the object's storage, not only its memory: a restart keeps it.
    worker.restart()
    live = worker.request("GET", f"/status?account={fake.appid}").json["accounts"][0]
    assert "reported_at" not in live, "asked of the object itself, loaded from its storage"
    assert live["counters"]["kv_write_failures"] >= counted, live["counters"]


def test_every_family_of_a_busy_server_is_read_back_and_passes_promtool(start_worker, fake,
                                                                        receiver):
    """A ticket, a forced stable_token refresh, an alert and a watched quota: every family
    has samples, Prometheus's parser reads them, and promtool finds nothing to fix."""
    worker = start_worker(**several(fake, QUOTA_WATCH_PATHS="/cgi-bin/message/custom/send",
                                    TEST_QUOTA_WATCH_SECS="1",
                                    **alert_vars(receiver, ALERT_AFTER_SECS="0")))
    main = {"account": fake.appid}
    assert worker.request("GET", "/ticket?type=jsapi").status == 200
    shop = worker.request("GET", "/token?account=shop").json["access_token"]
    forced = worker.request("POST", "/token/refresh?account=shop",
                            body=json.dumps({"stale_token": shop}))
    assert forced.status == 200, forced.text
    fake.modes[SECOND[0]] = "ip_not_whitelisted"
    assert_error(worker.request("GET", "/token?account=second"), 502, "wechat_error")
    assert wait_for(lambda: ("ip_refused", "started") in receiver.states(), 15)

    def ready():
        text, families = scrape(worker)
        has = (samples(families, "alert_active", account="second", condition="ip_refused")
               and samples(families, "watched_quota_daily_limit", **main))
        return (text, families) if has else None
    assert wait_for(ready, 20), scrape(worker)[0]
    text, families = ready()
    path = {"path": "/cgi-bin/message/custom/send"}
    assert value(families, "watched_quota_daily_limit", **main, **path) > 0
    assert value(families, "watched_quota_used", **main, **path) >= 0
    assert 7000 < value(families, "ticket_expires_in_seconds", ticket="jsapi", **main) <= 7200
    assert value(families, "forced_refreshes_today", account="shop") == 1
    assert value(families, "alert_active", account="second", condition="ip_refused") == 1
    # Every account family has a sample (pushed tickets aside: no platform here).
    for family in ("token_expires_in_seconds", "ticket_expires_in_seconds", "refreshes",
                   "upstream_calls", "upstream_calls_today", "explicit_refreshes_today",
                   "forced_refreshes_today", "daily_quota", "alert_active", "kv_write_failures",
                   "quota_clears_left", "account_state", "watched_quota_used",
                   "watched_quota_daily_limit", "accounts"):
        assert families[PREFIX + family].samples, family
    if shutil.which("promtool") is None:
        pytest.skip("read back with Prometheus's parser; promtool is not installed")
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked
