"""The scale run (`scripts/bench --scale N`): N accounts registered through the admin API
against the fake WeChat, token lifetimes shortened, then left alone for two lifetimes, no
reads and no cron, so that only the accounts' own alarms keep them fresh, while one status
page polls `/status` as the page does (every 30 s). Every Durable Object request is counted
from the worker's log (TEST_LOG_OBJECT_REQUESTS) and every alarm run from its alarm lines.
Prints what the README turns into figures for 10,000 accounts; asserts nothing."""

from __future__ import annotations

import base64
import json
import os
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from fake_wechat import FakeWeChat
from harness import CLIENT_KEY, Worker

ADMIN_KEY = "scale-admin-key-0123456789abcdef0123"


def appid_of(n: int) -> str:
    return f"wxscale{n:011d}"


def run(n: int, lifetime: int, margin: int, rounds: int, seconds: int, run_wrk, floor_config):
    fake = FakeWeChat("wxscaleunused00000", "unused").start()
    for i in range(n):
        fake.add_app(appid_of(i), f"scale-secret-{i}")
    fake.expires_in = lifetime
    variables = {
        "WECHAT_API_BASE": fake.base_url,
        # Every origin on loopback: the test switch below is honoured only then.
        "WECOM_API_BASE": fake.base_url,
        "CLIENT_KEYS": CLIENT_KEY,
        "ADMIN_KEYS": ADMIN_KEY,
        "ACCOUNTS_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "REFRESH_MARGIN_SECS": str(margin),
        "MIN_REFRESH_INTERVAL_SECS": "1",
        "TEST_LOG_OBJECT_REQUESTS": "1",
    }
    worker = Worker(variables).start()
    floor = None
    try:
        def register(i: int) -> int:
            entry = {"kind": "official_account", "appid": appid_of(i),
                     "secret": f"scale-secret-{i}"}
            return worker.request("PUT", f"/admin/accounts/scale-{i:05d}", key=ADMIN_KEY,
                                  body=json.dumps(entry), timeout=120).status

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(register, range(n)))
        registration_secs = time.monotonic() - started
        failed = sum(1 for s in statuses if s != 201)
        print(f"registered {n} accounts in {registration_secs:.1f} s ({failed} failed)",
              flush=True)

        window_start = time.time()
        calls_before = fake.calls
        requests_before = len(worker.events("object_request"))
        alarms_before = len(worker.events("alarm"))
        watch = 2 * lifetime
        print(f"watching {watch} s: no reads, no cron, one status page polling", flush=True)
        # One status page left open: a full page (40 accounts) every 30 s.
        stop = threading.Event()
        polls = []

        def poll():
            while not stop.is_set():
                polls.append(worker.request("GET", "/status?limit=40", timeout=60).status)
                stop.wait(30)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        time.sleep(watch)
        stop.set()
        poller.join(60)
        window_end = time.time()
        window_calls = fake.calls - calls_before
        requests = Counter((e["object"], e["op"]) for e in
                           worker.events("object_request")[requests_before:])
        window_alarms = len(worker.events("alarm")) - alarms_before

        # Each account's tokens in issue order: was each replaced before it expired?
        on_time = 0
        for i in range(n):
            tokens = fake.issued_by.get(appid_of(i), [])
            times = [fake.issued_at[t] for t in tokens]
            in_window = [t for t in times if t <= window_end]
            gaps_ok = all(b < a + lifetime for a, b in zip(in_window, in_window[1:]))
            alive_at_end = bool(in_window) and in_window[-1] + lifetime > window_end
            on_time += gaps_ok and alive_at_end
        alarms = [e for e in worker.events("alarm") if e.get("account", "").startswith("scale-")]
        period = lifetime - margin
        periods = (window_end - window_start) / period

        # The cron as a watchdog: three manual runs. Each run's subrequests, counted from what
        # it did: one registry call, and one object call per account line it logged.
        largest = 0
        for _ in range(3):
            visits_before = len(worker.events("cron"))
            worker.fire_cron()
            time.sleep(3)
            largest = max(largest, 1 + len(worker.events("cron")) - visits_before)

        # A Prometheus scrape of every account: one page of up to 1,000, one registry request.
        statuses_before = sum(1 for e in worker.events("object_request")
                              if (e["object"], e["op"]) == ("registry", "statuses"))
        scrape_started = time.monotonic()
        scraped = worker.request("GET", "/metrics", timeout=60)
        scrape_ms = (time.monotonic() - scrape_started) * 1000
        time.sleep(2)  # the log may come after the answer
        scrape_statuses = sum(1 for e in worker.events("object_request")
                              if (e["object"], e["op"]) == ("registry", "statuses")) - statuses_before
        scraped_accounts = scraped.text.count("wechat_token_edge_account_state{")

        # Hot GET /token for a runtime account against the constant workers-rs floor, once the
        # alarms have gone quiet: every account's next refresh gets a two-hour token, so that
        # the thousand alarms' work does not land in the hot path's CPU figure.
        fake.expires_in = 7200
        time.sleep(period + 15)
        body = worker.request("GET", "/token?account=scale-00000").text
        floor = Worker({"BODY": "x" * len(body)}, config=floor_config).start()
        results = {"runtime account GET /token": [], "Rust floor": []}
        runs_of = {"runtime account GET /token": (worker, "/token?account=scale-00000", True),
                   "Rust floor": (floor, "/", False)}
        for w, path, auth in runs_of.values():
            run_wrk(w, path, 32, 2, auth)
        for _ in range(rounds):
            for name, (w, path, auth) in runs_of.items():
                results[name].append(run_wrk(w, path, 32, seconds, auth))
        median = {name: {k: statistics.median(r[k] for r in rows) for k in ("rps", "cpu_us")}
                  for name, rows in results.items()}
    finally:
        worker.cleanup()
        if floor:
            floor.cleanup()
        fake.stop()

    ratio = median["runtime account GET /token"]["rps"] / median["Rust floor"]["rps"]
    print()
    print(f"Scale run: {n} accounts, token lifetime {lifetime} s, margin {margin} s "
          f"(due every {period} s), watched {watch} s with no reads and no cron.")
    print()
    print("| | value |")
    print("|---|---:|")
    print(f"| registration ({n} PUTs, 16 at a time, each fetching the first token) | "
          f"{registration_secs:.1f} s |")
    print(f"| accounts whose every token was replaced before it expired | "
          f"{100 * on_time / n:.1f} % |")
    lifetimes = watch / lifetime
    print(f"| upstream token calls per account per due period (lifetime − margin) | "
          f"{window_calls / n / periods:.2f} |")
    print(f"| … per token lifetime ({lifetime} s) | {window_calls / n / lifetimes:.2f} |")
    print(f"| alarm runs (object invocations) per account per due period | "
          f"{len(alarms) / n / periods:.2f} |")
    print(f"| largest number of subrequests in one cron run | {largest} |")
    per_period = {f"{obj} {op}": count / n / periods for (obj, op), count in requests.items()
                  if op != "statuses"}
    print(f"| object requests per account per due period: alarm runs | "
          f"{window_alarms / n / periods:.2f} |")
    for name, value in sorted(per_period.items()):
        print(f"| … requests to the {name} (made by the objects) | {value:.2f} |")
    page_requests = requests[("registry", "statuses")] + requests[("account", "status")]
    print(f"| status page polls (every 30 s, 40 accounts a page) | {len(polls)} "
          f"({sum(1 for p in polls if p == 200)} answered 200) |")
    print(f"| … object requests per poll, whatever the page size | "
          f"{page_requests / max(1, len(polls)):.2f} |")
    print(f"| `GET /metrics` ({scraped_accounts} accounts in one page, status {scraped.status}): "
          f"registry requests | {scrape_statuses} |")
    print(f"| … answer size, time | {len(scraped.text) / 1024:.0f} KiB, {scrape_ms:.0f} ms |")
    print(f"| hot `GET /token` of a runtime account ÷ Rust floor (req/s) | {ratio:.2f}x |")
    print(f"| … workerd CPU µs/request, runtime account / floor | "
          f"{median['runtime account GET /token']['cpu_us']:.0f} / "
          f"{median['Rust floor']['cpu_us']:.0f} |")
    print(json.dumps({"n": n, "registration_secs": registration_secs, "on_time": on_time,
                      "window_calls": window_calls, "periods": periods, "alarms": len(alarms),
                      "window_alarms": window_alarms, "polls": len(polls),
                      "object_requests": {f"{o} {p}": c for (o, p), c in requests.items()},
                      "largest_cron_subrequests": largest, "median": median,
                      "metrics": {"status": scraped.status, "accounts": scraped_accounts,
                                  "registry_requests": scrape_statuses,
                                  "bytes": len(scraped.text), "ms": scrape_ms}}))
