"""The admin API: accounts registered at runtime, their appsecrets sealed at rest, behaving
like environment accounts everywhere; and every refusal. The refusals come first."""

import base64
import json
import threading
import time
from pathlib import Path

import pytest

from harness import CLIENT_KEY, assert_sent_for, wait_for
from test_api import assert_error

ADMIN_KEY = "admin-key-0123456789abcdef0123456789"
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(32, 64))).decode()
RUNTIME_APPS = [(f"wxruntime{n:09d}", f"fake-secret-runtime-{n}-0123456789") for n in range(1, 8)]
RT_KEY = "runtime-scoped-key-0123456789"


def admin_vars(fake, **overrides):
    return {
        "ADMIN_KEYS": ADMIN_KEY,
        "ACCOUNTS_ENCRYPTION_KEY": KEY_A,
        "CLIENT_KEYS": f"{CLIENT_KEY},{RT_KEY}@rt1",
        "MIN_REFRESH_INTERVAL_SECS": "0",
        **overrides,
    }


def admin(worker, method, path, body=None, key=ADMIN_KEY):
    data = json.dumps(body) if isinstance(body, dict) else body
    return worker.request(method, path, key=key, body=data)


def register(worker, account_id, n, **fields):
    appid, secret = RUNTIME_APPS[n - 1]
    entry = {"kind": "official_account", "appid": appid, "secret": secret, **fields}
    return admin(worker, "PUT", f"/admin/accounts/{account_id}", entry)


@pytest.fixture(scope="module", autouse=True)
def runtime_apps(fake):
    for appid, secret in RUNTIME_APPS:
        fake.add_app(appid, secret)


@pytest.fixture(scope="module")
def worker(fake, runtime_apps):
    from conftest import WorkerFactory
    factory = WorkerFactory(fake)
    yield factory(**admin_vars(fake))
    factory.close()


class TestRefusals:
    def test_without_admin_keys_the_admin_api_answers_as_to_a_wrong_key(self, worker,
                                                                          start_worker):
        disabled = start_worker()
        body = assert_error(admin(disabled, "GET", "/admin/accounts"), 401, "unauthorized")
        assert "ADMIN_KEYS" in body["message"], "it says where the admin API comes from"
        # An outsider cannot tell a disabled admin API from a wrong key.
        wrong = assert_error(admin(worker, "GET", "/admin/accounts", key="x" * 40), 401,
                             "unauthorized")
        assert wrong == body

    def test_client_keys_and_admin_keys_do_not_cross(self, worker):
        assert_error(admin(worker, "GET", "/admin/accounts", key=CLIENT_KEY), 401, "unauthorized")
        assert_error(admin(worker, "GET", "/admin/accounts", key=None), 401, "unauthorized")
        assert_error(worker.request("GET", "/token", key=ADMIN_KEY), 401, "unauthorized")

    @pytest.mark.parametrize("entry, field", [
        ({"kind": "official_account", "appid": "wxruntime000000001"}, "secret"),
        ({"kind": "robot", "appid": "wxruntime000000001", "secret": "s"}, "kind"),
        ({"kind": "official_account", "appid": "wx 1", "secret": "s"}, "appid"),
        ({"kind": "wecom", "appid": "ww1", "secret": "s", "api": "stable"}, "api"),
        ({"appid": "wx1", "secret": "s", "id": "other"}, "id"),
        ({"appid": "wx1", "secret": "s", "colour": "red"}, "colour"),
    ])
    def test_invalid_entries_name_the_field_and_never_the_secret(self, worker, entry, field):
        entry = {**entry}
        if "secret" in entry:
            entry["secret"] = "fake-secret-never-echoed-0123"
        body = assert_error(admin(worker, "PUT", "/admin/accounts/rtbad", entry), 400,
                            "bad_request")
        assert field in body["message"] and "never-echoed" not in json.dumps(body)
        assert_error(admin(worker, "GET", "/admin/accounts/rtbad"), 404, "unknown_account")

    def test_bodies_must_be_small_json(self, worker):
        assert_error(admin(worker, "PUT", "/admin/accounts/rtbad", "{not json"), 400,
                     "bad_request")
        big = json.dumps({"appid": "wx1", "secret": "x" * 9000})
        assert_error(admin(worker, "PUT", "/admin/accounts/rtbad", big), 413,
                     "payload_too_large")
        reply = worker.request("PUT", "/admin/accounts/rtbad", key=ADMIN_KEY, body="a=b",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert_error(reply, 415, "unsupported_media_type")

    def test_limits_of_pages_and_keys(self, worker, start_worker):
        assert_error(admin(worker, "GET", "/admin/accounts?limit=1001"), 400, "bad_request")
        assert admin(worker, "GET", "/admin/accounts?limit=1000").status == 200
        body = assert_error(worker.request("GET", "/status?limit=101"), 400, "bad_request")
        assert "1 to 100" in body["message"]
        # Malformed admin keys refuse every caller as a wrong key does; the log says why.
        short = start_worker(ADMIN_KEYS="admin-key-too-short-0123")
        for key in ("admin-key-too-short-0123", None, ADMIN_KEY):
            body = assert_error(admin(short, "GET", "/admin/accounts", key=key), 401,
                                "unauthorized")
            assert "too-short" not in body["message"]
        assert wait_for(lambda: any("ADMIN_KEYS" in e["message"]
                                    for e in short.events("config_error")), 5)
        assert "too-short" not in str(short.events("config_error"))

    @pytest.mark.parametrize("key", [None, "bm90IDMyIGJ5dGVz"])
    def test_a_write_without_a_usable_encryption_key_is_a_config_error(self, start_worker, fake,
                                                                       key):
        overrides = {"ACCOUNTS_ENCRYPTION_KEY": key} if key else {}
        worker = start_worker(**{k: v for k, v in admin_vars(fake).items()
                                 if k != "ACCOUNTS_ENCRYPTION_KEY"}, **overrides)
        body = assert_error(register(worker, "rt1", 1), 500, "config_error")
        assert "ACCOUNTS_ENCRYPTION_KEY" in body["message"]
        if key:  # a malformed key refuses every route until it is fixed
            assert_error(admin(worker, "GET", "/admin/accounts/rt1"), 500, "config_error")
            assert_error(worker.get_token(), 500, "config_error")
        else:  # none: nothing was registered
            assert_error(admin(worker, "GET", "/admin/accounts/rt1"), 404, "unknown_account")

    def test_environment_accounts_are_read_only(self, worker, fake):
        entry = {"appid": fake.appid, "secret": "fake-secret-x-0123456789"}
        assert_error(admin(worker, "PUT", f"/admin/accounts/{fake.appid}", entry), 409,
                     "conflict")
        assert_error(admin(worker, "DELETE", f"/admin/accounts/{fake.appid}"), 409, "conflict")
        # Nor may a registered account fetch tokens for an environment account's appid.
        clash = admin(worker, "PUT", "/admin/accounts/rtclash", entry)
        assert_error(clash, 409, "conflict")
        shown = admin(worker, "GET", f"/admin/accounts/{fake.appid}").json
        assert shown["source"] == "env" and "secret" not in shown

    def test_two_runtime_accounts_of_one_appid_and_api_are_a_conflict(self, worker, fake):
        appid, secret = "wxclash0000000001", "fake-secret-clash-0123456789"
        fake.add_app(appid, secret)
        entry = {"kind": "official_account", "appid": appid, "secret": secret}
        assert admin(worker, "PUT", "/admin/accounts/rt-clash-a", entry).status == 201
        body = assert_error(admin(worker, "PUT", "/admin/accounts/rt-clash-b", entry), 409,
                            "conflict")
        assert "rt-clash-a" in body["message"]
        assert_error(admin(worker, "GET", "/admin/accounts/rt-clash-b"), 404, "unknown_account")
        # Through the other API it is another fetcher of its own (stable_token).
        stable = {**entry, "api": "stable"}
        assert admin(worker, "PUT", "/admin/accounts/rt-clash-b", stable).status == 201
        for name in ("rt-clash-a", "rt-clash-b"):
            assert admin(worker, "DELETE", f"/admin/accounts/{name}").status == 204


class TestRuntimeAccounts:
    def test_create_show_replace(self, worker):
        created = register(worker, "rt1", 1)
        assert created.status == 201, created.text
        shown = created.json
        assert shown.pop("edge_updated") is True
        assert set(shown) == {"id", "kind", "appid", "api", "source", "created_at",
                              "updated_at"}
        assert (shown["id"], shown["source"], shown["api"]) == ("rt1", "runtime", "classic")
        assert admin(worker, "GET", "/admin/accounts/rt1").json == shown
        replaced = register(worker, "rt1", 1, kind="official_account")
        assert replaced.status == 200
        assert replaced.json["created_at"] == shown["created_at"]
        assert "fake-secret" not in replaced.text

    def test_a_runtime_account_works_like_an_environment_one(self, worker, fake):
        register(worker, "rt1", 1)
        appid = RUNTIME_APPS[0][0]
        warmed = fake.calls_for(appid)
        token = worker.request("GET", "/token?account=rt1")
        assert token.status == 200, token.text
        assert fake.is_valid(token.json["access_token"])
        assert fake.calls_for(appid) == warmed, "registration fetched it already"
        by_appid = worker.request("GET", f"/token?appid={appid}")
        assert by_appid.json["access_token"] == token.json["access_token"]
        scoped = worker.request("GET", "/token?account=rt1", key=RT_KEY)
        assert scoped.json["access_token"] == token.json["access_token"]
        assert_error(worker.request("GET", "/token", key=RT_KEY), 403, "forbidden_account")
        ticket = worker.request("GET", "/ticket?account=rt1&type=jsapi")
        assert ticket.status == 200 and ticket.json["ticket"].startswith("TICKET-")
        sdk = worker.request(
            "GET", f"/cgi-bin/token?grant_type=client_credential&appid={appid}"
            f"&secret={CLIENT_KEY}", key=None)
        assert sdk.json["access_token"] == token.json["access_token"]
        gateway = worker.request("GET", "/gateway/cgi-bin/user/info?openid=o9&account=rt1")
        assert gateway.status == 200 and gateway.json["openid"] == "o9"
        passed = worker.request(
            "GET", f"/cgi-bin/user/info?access_token={token.json['access_token']}&openid=o10",
            key=None)
        assert passed.json.get("openid") == "o10", passed.text
        assert_sent_for(fake, appid, last=2)  # both ways in: rt1's own token
        refreshed = worker.request("POST", "/token/refresh?account=rt1",
                                   body=json.dumps({"stale_token": token.json["access_token"]}))
        assert refreshed.status == 200 and refreshed.json["access_token"] != \
            token.json["access_token"]
        status = worker.request("GET", "/status?account=rt1").json["accounts"][0]
        assert status["account"] == "rt1" and status["token"]["fingerprint"]
        signed = worker.request("GET", "/jssdk/signature?account=rt1&url=https://a.example/p")
        assert signed.status == 200 and signed.json["appId"] == appid, signed.text
        fresh = refreshed.json["access_token"]
        compat = worker.request("GET", f"/cgi-bin/ticket/getticket?access_token={fresh}"
                                "&type=jsapi", key=None)
        assert compat.json["ticket"] == ticket.json["ticket"], compat.text

    def test_head_is_answered_like_get(self, worker):
        for path in ("/admin/accounts", "/admin/accounts/absent"):
            get, head = (admin(worker, method, path) for method in ("GET", "HEAD"))
            assert head.status == get.status and head.text == ""
            assert head.headers["content-type"] == get.headers["content-type"]

    def test_listing_pages_through_environment_then_runtime_accounts(self, worker):
        for n in range(2, 6):
            assert register(worker, f"rt{n}", n).status in (200, 201)
        seen, cursor = [], None
        while True:
            path = "/admin/accounts?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = admin(worker, "GET", path).json
            assert len(page["accounts"]) <= 2
            seen += page["accounts"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        ids = [a["id"] for a in seen]
        assert ids[0] == worker.variables.get("WECHAT_APPID") or seen[0]["source"] == "env"
        assert [i for i in ids if i.startswith("rt")] == ["rt1", "rt2", "rt3", "rt4", "rt5"]
        assert len(ids) == len(set(ids))
        status = worker.request("GET", "/status?limit=3").json
        assert len(status["accounts"]) == 3 and status["next_cursor"]

    def test_accounts_sharing_an_appid_are_named_by_id_and_outlive_each_other(self, worker,
                                                                               fake):
        corp, secret = "wwsharedcorp000001", "fake-secret-shared-corp-0123456789"
        fake.add_app(corp, secret)
        for app in ("corp-a", "corp-b"):
            reply = admin(worker, "PUT", f"/admin/accounts/{app}",
                          {"kind": "wecom", "appid": corp, "secret": secret})
            assert reply.status == 201, reply.text
        body = assert_error(worker.request("GET", f"/token?appid={corp}"), 400, "bad_request")
        assert "?account=" in body["message"]
        assert admin(worker, "DELETE", "/admin/accounts/corp-a").status == 204
        left = worker.request("GET", f"/token?appid={corp}")
        assert left.status == 200 and left.json["account"] == "corp-b", left.text
        assert admin(worker, "DELETE", "/admin/accounts/corp-b").status == 204
        assert_error(worker.request("GET", f"/token?appid={corp}"), 404, "unknown_account")

    def test_delete_removes_the_account_and_its_token(self, worker, fake):
        register(worker, "rt6", 6)
        token = worker.request("GET", "/token?account=rt6").json["access_token"]
        assert admin(worker, "DELETE", "/admin/accounts/rt6").status == 204
        assert_error(worker.request("GET", "/token?account=rt6"), 404, "unknown_account")
        assert_error(admin(worker, "GET", "/admin/accounts/rt6"), 404, "unknown_account")
        assert_error(admin(worker, "DELETE", "/admin/accounts/rt6"), 404, "unknown_account")
        passed = worker.request("GET", f"/cgi-bin/user/info?access_token={token}&openid=o",
                                key=None)
        assert passed.json["errcode"] == 40001, "its token is no longer recognized"
        again = register(worker, "rt6", 6)
        assert again.status == 201, "a deleted account can be registered anew"
        fresh = worker.request("GET", "/token?account=rt6").json["access_token"]
        assert fresh != token
        status = worker.request("GET", "/status?account=rt6").json["accounts"][0]
        assert status["upstream_calls_today"] == 1, "its counts went with it"

    def test_reset_lifts_a_quota_pause(self, worker, fake):
        appid = RUNTIME_APPS[6][0]
        fake.modes[appid] = "quota"
        assert register(worker, "rt7", 7).status == 201, "stored, though its first fetch failed"
        paused = assert_error(worker.request("GET", "/token?account=rt7"), 503, "no_valid_token")
        assert paused["wechat_errcode"] == 45009, paused
        status = worker.request("GET", "/status?account=rt7").json["accounts"][0]
        assert status["auto_refresh"].startswith("paused_until")
        fake.modes[appid] = "ok"  # WeChat's clear_quota
        reset = admin(worker, "POST", "/admin/accounts/rt7/reset")
        assert reset.status == 200 and reset.json == {"id": "rt7", "reset": True}
        status = worker.request("GET", "/status?account=rt7").json["accounts"][0]
        assert status["auto_refresh"] == "on"
        assert worker.request("GET", "/token?account=rt7").status == 200
        assert wait_for(lambda: any(e["account"] == "rt7"
                                    for e in worker.events("admin_account_reset")))


class TestReset:
    def test_reset_lifts_the_servers_own_quota_count(self, start_worker, fake):
        # DAILY_QUOTA=2: two calls today and the server pauses by its own count; after
        # WeChat's clear_quota the operator's reset lifts it, and the count shown stays.
        worker = start_worker(**admin_vars(fake, DAILY_QUOTA="2", EXPLICIT_REFRESH_DAILY_LIMIT="5"))
        assert register(worker, "rt1", 1).status == 201
        stale = worker.request("GET", "/token?account=rt1").json["access_token"]
        refreshed = worker.request("POST", "/token/refresh?account=rt1",
                                   body=json.dumps({"stale_token": stale}))
        assert refreshed.status == 200
        status = worker.request("GET", "/status?account=rt1").json["accounts"][0]
        assert status["auto_refresh"].startswith("paused_until"), status
        assert admin(worker, "POST", "/admin/accounts/rt1/reset").status == 200
        status = worker.request("GET", "/status?account=rt1").json["accounts"][0]
        assert (status["auto_refresh"], status["upstream_calls_today"]) == ("on", 2)

    def test_reset_lifts_a_credential_block_and_works_for_environment_accounts(
            self, start_worker, fake):
        appid, secret = RUNTIME_APPS[4]
        fake.add_app(appid, "fake-secret-frozen-for-now-0123456")  # WeChat refuses ours
        worker = start_worker(**admin_vars(fake))
        try:
            assert register(worker, "rt5", 5).status == 201
            assert_error(worker.request("GET", "/token?account=rt5"), 502, "wechat_error")
            status = worker.request("GET", "/status?account=rt5").json["accounts"][0]
            assert status["auto_refresh"] == "blocked_until_config_changes"
            fake.add_app(appid, secret)  # unfrozen, same secret
            assert admin(worker, "POST", "/admin/accounts/rt5/reset").status == 200
            status = worker.request("GET", "/status?account=rt5").json["accounts"][0]
            assert status["auto_refresh"] == "on"
            assert worker.request("GET", "/token?account=rt5").status == 200
        finally:
            fake.add_app(appid, secret)
        env_reset = admin(worker, "POST", f"/admin/accounts/{fake.appid}/reset")
        assert env_reset.status == 200 and env_reset.json == {"id": fake.appid, "reset": True}
        def logged():
            return [e["account"] for e in worker.events("admin_account_reset")]
        assert wait_for(lambda: len(logged()) == 2, 10) and logged() == ["rt5", fake.appid]


def test_delete_takes_the_tickets_and_the_alarm_with_it(start_worker, fake):
    fake.expires_in = 24
    worker = start_worker(**admin_vars(fake, REFRESH_MARGIN_SECS="10",
                                       MIN_REFRESH_INTERVAL_SECS="1"))
    assert register(worker, "rt6", 6).status == 201
    ticket = worker.request("GET", "/ticket?account=rt6&type=jsapi").json["ticket"]
    assert admin(worker, "DELETE", "/admin/accounts/rt6").status == 204
    deleted_at = len([e for e in worker.events("alarm") if e["account"] == "rt6"])
    time.sleep(20)  # the token would have been due at +14 s
    alarms = [e for e in worker.events("alarm") if e["account"] == "rt6"]
    assert len(alarms) == deleted_at, "no alarm fires for a deleted account"
    assert register(worker, "rt6", 6).status == 201
    again = worker.request("GET", "/ticket?account=rt6&type=jsapi").json["ticket"]
    assert again != ticket, "the ticket and its KV entry went with the account"


def test_accounts_survive_a_restart_and_their_secrets_are_sealed(start_worker, fake):
    worker = start_worker(**admin_vars(fake))
    assert register(worker, "rt1", 1).status == 201
    token = worker.request("GET", "/token?account=rt1").json["access_token"]
    calls = fake.calls_for(RUNTIME_APPS[0][0])
    worker.restart()
    again = worker.request("GET", "/token?account=rt1")
    assert again.status == 200 and again.json["access_token"] == token
    assert fake.calls_for(RUNTIME_APPS[0][0]) == calls
    secret = RUNTIME_APPS[0][1].encode()
    files = [p for p in Path(worker.persist_dir).rglob("*") if p.is_file()]
    assert files, "the state was persisted"
    assert not [p for p in files if secret in p.read_bytes()], "an appsecret stored in plain"
    assert RUNTIME_APPS[0][1] not in worker.log()


def test_the_encryption_key_rotates_without_a_plaintext_upload(start_worker, fake):
    worker = start_worker(**admin_vars(fake))
    for n in (1, 2):
        assert register(worker, f"rt{n}", n).status == 201
    stale = worker.request("GET", "/token?account=rt1").json["access_token"]
    # new,old: the accounts sealed under the old key still open (a refresh needs the secret).
    worker.variables["ACCOUNTS_ENCRYPTION_KEY"] = f"{KEY_B},{KEY_A}"
    worker.restart()
    refreshed = worker.request("POST", "/token/refresh?account=rt1",
                               body=json.dumps({"stale_token": stale}))
    assert refreshed.status == 200, refreshed.text
    assert worker.request("GET", "/status").json["sealed_under_older_keys"] == 2
    scoped = worker.request("GET", "/status", key=RT_KEY).json
    assert "sealed_under_older_keys" not in scoped, "a limited key learns no count"
    # The worker seals them again itself, in batches, resumable: no appsecret is sent.
    first = admin(worker, "POST", "/admin/reseal?limit=1")
    assert first.status == 200, first.text
    assert (first.json["resealed"], first.json["remaining"]) == (1, 1)
    second = admin(worker, "POST", "/admin/reseal?limit=1").json
    assert (second["resealed"], second["remaining"], second["unopenable"]) == (1, 0, [])
    assert admin(worker, "POST", "/admin/reseal").json["resealed"] == 0
    assert worker.request("GET", "/status").json["sealed_under_older_keys"] == 0
    for n in (1, 2):
        assert RUNTIME_APPS[n - 1][1] not in worker.log()
    # The old key can go.
    worker.variables["ACCOUNTS_ENCRYPTION_KEY"] = KEY_B
    worker.restart()
    stale = refreshed.json["access_token"]
    refreshed = worker.request("POST", "/token/refresh?account=rt1",
                               body=json.dumps({"stale_token": stale}))
    assert refreshed.status == 200, refreshed.text
    assert worker.request("GET", "/token?account=rt2").status == 200
    # Removing the key that seals them is refused at the first request, on every route,
    # naming how many it would break, before any read does.
    worker.variables["ACCOUNTS_ENCRYPTION_KEY"] = KEY_A
    worker.restart()
    for reply in (worker.get_token(), worker.request("GET", "/token?account=rt1"),
                  admin(worker, "GET", "/admin/accounts")):
        body = assert_error(reply, 500, "config_error")
        assert "ACCOUNTS_ENCRYPTION_KEY" in body["message"]
        assert "2 runtime account(s)" in body["message"] and "/admin/reseal" in body["message"]
    assert KEY_B not in worker.log() and KEY_A not in worker.log()


def test_an_account_no_one_reads_is_refreshed_by_its_alarm_alone(start_worker, fake):
    # Tokens live 24 s and are due 10 s before expiry; nobody reads, no cron runs.
    fake.expires_in = 24
    worker = start_worker(**admin_vars(fake, REFRESH_MARGIN_SECS="10",
                                       MIN_REFRESH_INTERVAL_SECS="1"))
    appid = RUNTIME_APPS[1][0]
    assert register(worker, "rt2", 2).status == 201
    assert fake.calls_for(appid) == 1, "registration fetches the first token"
    # Due at +14 s and again at about +28 s.
    assert wait_for(lambda: fake.calls_for(appid) >= 3, 60), \
        "the alarm refreshed it, twice, before each margin ran out"
    alarms = [e for e in worker.events("alarm") if e["account"] == "rt2"]
    assert any(e["token"]["outcome"] == "refreshed" for e in alarms), alarms[-3:]
    assert len(alarms) <= 6, f"about one alarm per due time, not a loop: {len(alarms)}"
    calls = fake.calls_for(appid)
    token = worker.request("GET", "/token?account=rt2").json
    assert fake.calls_for(appid) == calls, "the read was a KV hit"
    assert fake.is_valid(token["access_token"]) and token["expires_in"] > 10


class TestCronWatchdog:
    def test_a_cron_run_visits_at_most_its_batch_and_the_rotation_reaches_everyone(
            self, start_worker, fake):
        worker = start_worker(**admin_vars(fake, CRON_BATCH="3"))
        for n in range(1, 6):
            assert register(worker, f"rt{n}", n).status == 201
        everyone = {fake.appid, "rt1", "rt2", "rt3", "rt4", "rt5"}
        visited = []
        for _ in range(2):
            seen = len(worker.events("cron_run"))
            lines_before = len(worker.events("cron"))
            worker.run_cron(lines=3)
            run = worker.events("cron_run")[seen]
            time.sleep(1)  # any line of this run that is still on its way
            lines = worker.events("cron")[lines_before:]
            # What the run did: one registry call and one object call per account it logged,
            # within its batch.
            assert len(lines) == 3 and run["subrequests"] == 1 + len(lines), (lines, run)
            visited.append({line["account"] for line in lines})
        assert len(visited[0]) == 3 and len(visited[1]) == 3
        assert visited[0] | visited[1] == everyone, "two runs of three cover all six"

    def test_the_cron_refreshes_accounts_whose_alarms_never_fired_half_a_batch_a_run(
            self, start_worker, fake):
        fake.expires_in = 30  # due 20 s before expiry: at once plus 10 s
        worker = start_worker(**admin_vars(fake, REFRESH_MARGIN_SECS="20", CRON_BATCH="2",
                                           TEST_NO_DUE_ALARMS="1"))
        appids = [RUNTIME_APPS[n][0] for n in range(3)]
        for n in (1, 2, 3):
            assert register(worker, f"rt{n}", n).status == 201
        assert [fake.calls_for(appid) for appid in appids] == [1, 1, 1]
        time.sleep(17)  # due at +10 s; a quarter of the margin (5 s) late is overdue
        assert [fake.calls_for(appid) for appid in appids] == [1, 1, 1], "no alarm fired"
        # Three are overdue; a run of two takes the most overdue one, and the rotation the
        # other half: accounts that stay overdue never starve the rotation.
        seen = len(worker.events("cron_run"))
        lines = worker.run_cron(lines=2)
        run = worker.events("cron_run")[seen]
        assert run["overdue"] == ["rt1"] and run["rotation"] == 1, run
        assert ("rt1", "refreshed") in [(e["account"], e["outcome"]) for e in lines]
        assert fake.calls_for(appids[0]) == 2


def test_a_deployment_may_hold_runtime_accounts_only(start_worker, fake):
    worker = start_worker(**admin_vars(fake, WECHAT_APPID="", WECHAT_APPSECRET=""))
    assert admin(worker, "GET", "/admin/accounts").json == {"accounts": [], "next_cursor": None}
    assert register(worker, "rt3", 3).status == 201
    assert worker.request("GET", "/token?account=rt3").status == 200
    body = assert_error(worker.request("GET", "/token"), 400, "bad_request")
    assert "account" in body["message"]


def test_a_held_stable_token_does_not_wake_its_alarm_over_and_over(start_worker, fake):
    # Due at once (700 s left, margin 900 s), but stable_token hands the same token back until
    # 300 s are left: the alarm must wait for that, not fire every second.
    fake.expires_in = 700
    worker = start_worker(**admin_vars(fake))
    assert register(worker, "rt4", 4, api="stable").status == 201
    time.sleep(12)
    # The first alarm (about 10 s after the registration) may still be logging.
    assert wait_for(lambda: [e for e in worker.events("alarm") if e["account"] == "rt4"], 10)
    alarms = [e for e in worker.events("alarm") if e["account"] == "rt4"]
    assert 1 <= len(alarms) <= 3, alarms
    assert fake.calls_for(RUNTIME_APPS[3][0]) <= 3


def test_a_failed_kv_write_is_repaired_by_the_cron_and_never_maps_a_wrong_appid(start_worker,
                                                                                fake):
    # Every key's second write fails once: the PUT that moves rt1 to another appid writes
    # none of its KV copies.
    worker = start_worker(**admin_vars(fake, TEST_FAIL_KV_WRITES="2-2"))
    (first_appid, _), (second_appid, second_secret) = RUNTIME_APPS[0], RUNTIME_APPS[1]
    assert register(worker, "rt1", 1).status == 201
    moved = admin(worker, "PUT", "/admin/accounts/rt1",
                  {"kind": "official_account", "appid": second_appid, "secret": second_secret})
    assert moved.status == 200, moved.text
    assert moved.json["edge_updated"] is False, "the answer says the edge lags"
    assert admin(worker, "GET", "/admin/accounts/rt1").json["appid"] == second_appid
    assert wait_for(lambda: worker.events("kv_publish_failed"), 5)
    worker.run_cron(lines=2)
    assert worker.events("cron_run")[-1]["kv_repaired"] >= 1

    def repaired():
        reply = worker.request("GET", "/token?account=rt1")
        by_appid = worker.request("GET", f"/token?appid={second_appid}")
        return reply.json.get("appid") == second_appid and by_appid.json.get("account") == "rt1"
    assert wait_for(repaired, 40), "the edge has the registry's entry again"
    assert_error(worker.request("GET", f"/token?appid={first_appid}"), 404, "unknown_account")


def test_a_delete_whose_kv_withdrawal_failed_is_withdrawn_by_the_cron(start_worker, fake):
    # The second write of each KV key fails once: the DELETE's removal of the edge's copy.
    worker = start_worker(**admin_vars(fake, TEST_FAIL_KV_WRITES="2-2"))
    assert register(worker, "rt1", 1).status == 201
    assert admin(worker, "DELETE", "/admin/accounts/rt1").status == 500
    worker.run_cron(lines=2)
    assert any(e.get("outcome") == "erased" for e in worker.events("cron"))
    assert wait_for(lambda: worker.request("GET", "/token?account=rt1").status == 404, 40), \
        "the edge's copy is withdrawn"
    assert_error(admin(worker, "DELETE", "/admin/accounts/rt1"), 404, "unknown_account")


@pytest.mark.parametrize("finisher", ["a second DELETE", "the cron"])
def test_a_delete_that_failed_half_way_is_finished(start_worker, fake, finisher):
    # The first erase of an object's state fails.
    worker = start_worker(**admin_vars(fake, TEST_FAIL_ERASES="1"))
    assert register(worker, "rt1", 1).status == 201
    assert worker.request("GET", "/token?account=rt1").status == 200
    assert admin(worker, "DELETE", "/admin/accounts/rt1").status == 500
    # Gone from the edge at once all the same.
    assert_error(worker.request("GET", "/token?account=rt1"), 404, "unknown_account")
    if finisher == "the cron":
        worker.run_cron(lines=2)
        assert any(e.get("outcome") == "erased" for e in worker.events("cron"))
        assert_error(admin(worker, "DELETE", "/admin/accounts/rt1"), 404, "unknown_account")
    else:
        assert admin(worker, "DELETE", "/admin/accounts/rt1").status == 204
        assert_error(admin(worker, "DELETE", "/admin/accounts/rt1"), 404, "unknown_account")
    assert register(worker, "rt1", 1).status == 201
    status = worker.request("GET", "/status?account=rt1").json["accounts"][0]
    assert status["upstream_calls_today"] == 1, "nothing of the old rt1 came back"


def test_concurrent_puts_of_one_id_leave_the_edge_on_the_last_write(start_worker, fake):
    from harness import burst
    worker = start_worker(**admin_vars(fake))
    apps = RUNTIME_APPS[2:6]
    order = iter(apps)
    lock = threading.Lock()

    def put():
        with lock:
            appid, secret = next(order)
        return admin(worker, "PUT", "/admin/accounts/rt-race",
                     {"kind": "official_account", "appid": appid, "secret": secret}).status
    assert all(status in (200, 201) for status in burst(len(apps), put))
    truth = admin(worker, "GET", "/admin/accounts/rt-race").json["appid"]
    time.sleep(31)  # past this isolate's memory of the descriptor
    reply = worker.request("GET", "/token?account=rt-race")
    assert reply.status == 200 and reply.json["appid"] == truth, reply.text
    for appid, _ in apps:
        by_appid = worker.request("GET", f"/token?appid={appid}")
        if appid == truth:
            assert by_appid.json["account"] == "rt-race"
        else:
            assert_error(by_appid, 404, "unknown_account")


def test_replacing_an_account_mid_call_starts_no_second_call_beside_it(start_worker, fake):
    appid, secret = RUNTIME_APPS[0]
    worker = start_worker(**admin_vars(fake))
    assert register(worker, "rt1", 1).status == 201
    stale = worker.request("GET", "/token?account=rt1").json["access_token"]
    fake.slow_ms = 2000  # within the tests' UPSTREAM_TIMEOUT_MS: answered, not abandoned
    fake.modes[appid] = "slow"
    fake.max_in_flight_by.clear()
    answers = {}

    def refresh():
        answers["refresh"] = worker.request("POST", "/token/refresh?account=rt1",
                                            body=json.dumps({"stale_token": stale}))
    caller = threading.Thread(target=refresh)
    caller.start()
    assert wait_for(lambda: fake.in_flight == 1, 5)
    # Replaced twice while its call is under way: each new registration waits for every call
    # still under way to end before it calls WeChat itself (its warm-up, the reconciled call
    # cut off by the change).
    puts = [threading.Thread(target=register, args=(worker, "rt1", 1)) for _ in range(2)]
    for put in puts:
        put.start()
    for put in puts:
        put.join(60)
    reader = worker.request("GET", "/token?account=rt1")
    caller.join(30)
    assert reader.status == 200, reader.text
    assert fake.max_in_flight_by[appid] == 1, "never two calls for one appid at once"
