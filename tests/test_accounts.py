"""Several accounts: official accounts, a mini program on stable_token, a WeCom app; scoped
client keys; stable_token's forced-refresh limits."""

import json
import random
import time

import pytest

from harness import ATTEMPTS_PER_REFRESH, CLIENT_KEY, burst, next_beijing_midnight, wait_for
from setups import CORP, SCOPED_KEY, SECOND, STABLE, accounts_json, several
from test_api import assert_error, assert_token_answer

def token_for(worker, account=None, **kwargs):
    path = "/token" if account is None else f"/token?account={account}"
    return worker.request("GET", path, **kwargs)


class TestSideBySide:
    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers, fake):
        return class_workers(**several(fake))

    def test_each_account_has_its_own_token(self, worker, fake):
        main = assert_token_answer(token_for(worker), fake)
        second = assert_token_answer(token_for(worker, "second"), fake, appid=SECOND[0],
                                     account="second")
        corp = assert_token_answer(worker.request("GET", "/token?appid=corp-app"), fake,
                                   appid=CORP[0], account="corp-app")
        shop = assert_token_answer(token_for(worker, "shop"), fake, appid=STABLE[0],
                                   account="shop")
        tokens = {a["access_token"] for a in (main, second, corp, shop)}
        assert len(tokens) == 4
        for appid in (fake.appid, SECOND[0], CORP[0], STABLE[0]):
            assert fake.calls_for(appid) == 1
        endpoints = {r["endpoint"] for r in fake.requests}
        assert endpoints == {"token", "gettoken", "stable_token"}
        # Served from each account's own cache afterwards.
        assert token_for(worker, "second").json["access_token"] == second["access_token"]
        assert fake.calls == 4

    def test_account_names_are_checked(self, worker, fake):
        assert_error(token_for(worker, "nope"), 404, "unknown_account")
        assert_error(worker.request("GET", "/token?account=second&appid=shop"), 400,
                     "bad_request")
        assert_error(worker.request("POST", "/token/refresh?account=nope"), 404,
                     "unknown_account")
        assert fake.calls == 0

    def test_scoped_keys_reach_only_their_accounts(self, worker, fake):
        for account, appid in (("second", SECOND[0]), ("corp-app", CORP[0])):
            reply = token_for(worker, account, key=SCOPED_KEY)
            assert reply.status == 200 and reply.json["account"] == account, reply.text
            assert fake.token_owner(reply.json["access_token"]) == appid, "that account's token"
        # The default account and one that does not exist are both outside the key's list.
        assert_error(token_for(worker, key=SCOPED_KEY), 403, "forbidden_account")
        assert_error(token_for(worker, "shop", key=SCOPED_KEY), 403, "forbidden_account")
        assert_error(token_for(worker, "nope", key=SCOPED_KEY), 403, "forbidden_account")
        reply = worker.request("POST", "/token/refresh?account=shop", key=SCOPED_KEY)
        assert_error(reply, 403, "forbidden_account")
        # The scope is not part of the key.
        assert_error(token_for(worker, "second", key=f"{SCOPED_KEY}@second"), 401,
                     "unauthorized")

    def test_wecom_errors_are_reported(self, start_worker, fake):
        wrong = {"id": "corp-wrong", "kind": "wecom", "appid": CORP[0],
                 "secret": "fake-secret-wrong-corp-0123"}
        unknown = {"id": "corp-unknown", "kind": "wecom", "appid": "wwunknown000000000",
                   "secret": "fake-secret-unknown-0123"}
        worker = start_worker(**several(fake, WECHAT_ACCOUNTS=accounts_json(wrong, unknown)))
        body = assert_error(token_for(worker, "corp-wrong"), 502, "wechat_error")
        assert body["wechat_errcode"] == 40001
        assert wrong["secret"] not in json.dumps(body)
        body = assert_error(token_for(worker, "corp-unknown"), 502, "wechat_error")
        assert body["wechat_errcode"] == 40013
        fake.modes[CORP[0]] = "busy"
        body = assert_error(token_for(worker, "corp-app"), 502, "wechat_error")
        assert body["wechat_errcode"] == -1
        # The other accounts are unaffected.
        assert token_for(worker, "second").status == 200


def test_single_flight_holds_per_account_under_a_mixed_burst(start_worker, fake):
    worker = start_worker(**several(fake))
    fake.latency_ms = 300
    accounts = [None, "second", "corp-app", "shop"] * 40
    random.Random(7).shuffle(accounts)
    plan = iter(accounts)
    replies = burst(len(accounts), lambda: (lambda a: (a, token_for(worker, a)))(next(plan)))
    by_account = {}
    for account, reply in replies:
        assert reply.status == 200, reply.text
        by_account.setdefault(account, set()).add(reply.json["access_token"])
    assert all(len(tokens) == 1 for tokens in by_account.values()), by_account
    for appid in (fake.appid, SECOND[0], CORP[0], STABLE[0]):
        assert fake.calls_for(appid) == 1, appid
        assert fake.max_in_flight_by[appid] == 1


class TestStableToken:
    """A stable_token account with short limits: forced refreshes 2 s apart, 3 a day."""

    @pytest.fixture(scope="class")
    @classmethod
    def worker(cls, class_workers, fake):
        return class_workers(**several(
            fake, MIN_REFRESH_INTERVAL_SECS="0", STABLE_FORCE_SPACING_SECS="2",
            STABLE_FORCE_DAILY_LIMIT="3"))

    def refresh(self, worker, stale=None):
        body = json.dumps({"stale_token": stale}) if stale else None
        return worker.request("POST", "/token/refresh?account=shop", body=body)

    def last_force_flag(self, fake):
        return fake.requests[-1]["force_refresh"]

    def test_normal_mode_returns_the_current_token_with_its_expiry(self, worker, fake):
        first = assert_token_answer(token_for(worker, "shop"), fake, appid=STABLE[0],
                                    account="shop")
        assert self.last_force_flag(fake) is False
        time.sleep(1.1)
        again = assert_token_answer(self.refresh(worker), fake, appid=STABLE[0], account="shop")
        assert self.last_force_flag(fake) is False
        assert again["access_token"] == first["access_token"]
        assert again["expires_in"] < first["expires_in"]
        assert fake.calls_for(STABLE[0]) == 2

    def test_a_rejected_current_token_forces_a_refresh_within_the_limits(self, worker, fake):
        current = token_for(worker, "shop").json["access_token"]
        fresh = assert_token_answer(self.refresh(worker, current), fake, appid=STABLE[0],
                                    account="shop")["access_token"]
        assert fresh != current
        assert self.last_force_flag(fake) is True

        reply = self.refresh(worker, fresh)
        body = assert_error(reply, 429, "refresh_too_soon")
        assert body["reason"] == "force_spacing"
        assert 1 <= int(reply.headers["retry-after"]) <= 2

        for _ in range(2):  # the 2nd and 3rd forced refreshes of the day
            time.sleep(2.1)
            fresh = assert_token_answer(self.refresh(worker, fresh), fake, appid=STABLE[0],
                                        account="shop")["access_token"]
        assert fake.calls_for(STABLE[0]) == 3

        time.sleep(2.1)
        reply = self.refresh(worker, fresh)
        body = assert_error(reply, 429, "refresh_too_soon")
        assert body["reason"] == "force_daily_limit"
        assert abs(int(reply.headers["retry-after"]) - (next_beijing_midnight() - time.time())) <= 5
        assert fake.calls_for(STABLE[0]) == 3
        # Readers keep getting the current token.
        assert token_for(worker, "shop").json["access_token"] == fresh

    def test_an_old_stale_token_is_answered_without_forcing(self, worker, fake):
        current = token_for(worker, "shop").json["access_token"]
        reply = self.refresh(worker, "FAKE-an-older-token")
        assert_token_answer(reply, fake, current, appid=STABLE[0], account="shop")
        assert fake.calls == 0


def test_cron_visits_every_account_and_one_failure_stops_none(start_worker, fake):
    # The cron alone: no account's alarm refreshes it first.
    worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="1", TEST_NO_DUE_ALARMS="1"))
    fake.expires_in = 600  # inside the 900 s margin: every account is due
    accounts = {None: fake.appid, "second": SECOND[0], "corp-app": CORP[0], "shop": STABLE[0]}
    for account in accounts:
        assert token_for(worker, account).status == 200
    fake.modes[SECOND[0]] = "busy"
    time.sleep(1.1)
    events = {e["account"]: e for e in worker.run_cron(lines=4)}
    assert len(events) == 4
    assert events["second"]["status"] == 502
    assert events["second"]["outcome"] == "wechat_error"
    for account in (fake.appid, "corp-app", "shop"):
        assert events[account]["outcome"] == "refreshed", events[account]
    for appid in (fake.appid, CORP[0], STABLE[0]):
        assert fake.calls_for(appid) == 2, appid
    assert fake.calls_for(SECOND[0]) == 1 + ATTEMPTS_PER_REFRESH


def test_account_configuration_errors_name_the_entry_not_the_secret(start_worker, fake):
    duplicate = {"id": "second", "appid": "wxother00000000000", "secret": "fake-secret-dup-0123"}
    worker = start_worker(**several(fake, WECHAT_ACCOUNTS=accounts_json(duplicate)))
    reply = token_for(worker, "second")
    body = assert_error(reply, 500, "config_error")
    assert "WECHAT_ACCOUNTS" in body["message"] and "twice" in body["message"]
    assert duplicate["secret"] not in reply.text and SECOND[1] not in reply.text
    assert fake.calls == 0


def test_short_client_keys_are_a_configuration_error(start_worker, fake):
    worker = start_worker(**several(fake, CLIENT_KEYS=f"{CLIENT_KEY},too-short@second"))
    # Every caller is refused as a wrong key is (nobody outside learns the setup's state);
    # the log names the setting and the entry.
    reply = token_for(worker)
    assert_error(reply, 401, "unauthorized")
    assert "too-short" not in reply.text
    assert wait_for(lambda: any("CLIENT_KEYS" in e["message"] and "entry 2" in e["message"]
                                for e in worker.events("config_error")), 5)
    assert "too-short" not in str(worker.events("config_error"))


def test_wecoms_same_token_is_never_served_past_its_first_expiry(start_worker, fake):
    # WeCom's gettoken hands back the token it issued while it is valid, announcing its full
    # lifetime again; the token still dies at its first expiry.
    fake.expires_in = 12
    worker = start_worker(**several(fake, REFRESH_MARGIN_SECS="6", MIN_REFRESH_INTERVAL_SECS="1"))
    first = token_for(worker, "corp-app").json["access_token"]
    dies_at = fake.issued_at[first] + 12
    served = []
    while time.time() < dies_at + 4:
        asked_at = time.time()
        reply = token_for(worker, "corp-app")
        assert reply.status == 200, reply.text
        served.append((asked_at, reply.json["access_token"]))
        time.sleep(0.4)
    for asked_at, token in served:
        assert asked_at < fake.issued_at[token] + 12, \
            f"a token served {asked_at - fake.issued_at[token] - 12:.1f} s after it died"
    assert served[-1][1] != first, "a new token after the first one's expiry"
    # Inside the margin WeCom only hands the same token back: it is asked once there, not
    # every interval, and again when the token dies (within our second-rounded expiry and
    # WeCom's own, the same token can come back once or twice more). "When it dies" is the
    # alarm's: up to a quarter of the margin early (its jitter, 1.5 s) before an expiry that
    # the server rounds down to the second (up to 1 s early).
    times = [t - fake.call_times[0] for t in fake.call_times]  # from the first fetch
    in_margin = [t for t in times if 6 - 1 <= t < 12 - 1 - 1.5]
    assert len(in_margin) == 1, times
    at_expiry = [t for t in times if t >= 12 - 1 - 1.5]
    # The alarm's early call, then (the same token coming back until WeCom's own expiry) a
    # few more around it: never one per interval through the margin.
    assert 1 <= len(at_expiry) <= 4, times
