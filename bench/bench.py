"""The benchmark (scripts/bench): hot GET /token against a constant-response baseline worker,
both in wrangler dev and driven by wrk, alternating A/B; a 1000-request cold burst; the wasm's
size. Prints a report; asserts nothing (the targets are read off the report)."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fake_wechat import FakeWeChat  # noqa: E402
from harness import CLIENT_KEY, Worker  # noqa: E402

APPID = "wxbench0123456789a"
SECRET = "bench-secret-0123456789"


def worker_vars(fake: FakeWeChat) -> dict[str, str]:
    return {
        "WECHAT_APPID": APPID,
        "WECHAT_APPSECRET": SECRET,
        "CLIENT_KEYS": CLIENT_KEY,
        "WECHAT_API_BASE": fake.base_url,
    }


def run_wrk(url: str, connections: int, seconds: int, auth: bool) -> dict[str, float]:
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if auth:
        command += ["-H", f"Authorization: Bearer {CLIENT_KEY}"]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx.group(1)} error answers during the run:\n{output}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": to_ms(re.search(r"\s50%\s+([\d.]+\w+)", output).group(1)),
        "p99": to_ms(re.search(r"\s99%\s+([\d.]+\w+)", output).group(1)),
    }


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def cold_burst(fake: FakeWeChat, requests: int) -> tuple[int, int]:
    """Upstream calls, and non-200 answers, for `requests` concurrent reads of a cold account."""
    fake.reset()
    fake.latency_ms = 300  # WeChat's answer takes a while: the burst arrives during the call
    worker = Worker(worker_vars(fake)).start()
    try:
        with ThreadPoolExecutor(max_workers=200) as pool:
            statuses = list(pool.map(lambda _: worker.get_token().status, range(requests)))
        return fake.calls, sum(1 for s in statuses if s != 200)
    finally:
        worker.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()

    fake = FakeWeChat(APPID, SECRET).start()
    worker = Worker(worker_vars(fake)).start()
    answer = worker.get_token()
    assert answer.status == 200, answer.text
    baseline = Worker({"BODY": "x" * len(answer.text)}, config=REPO / "bench/baseline/wrangler.toml")
    baseline.start()
    results = {"token": [], "baseline": []}
    try:
        run_wrk(worker.base_url + "/token", args.connections, 2, auth=True)  # warm both up
        run_wrk(baseline.base_url + "/", args.connections, 2, auth=False)
        for round_number in range(1, args.rounds + 1):
            for name, url, auth in (("token", worker.base_url + "/token", True),
                                    ("baseline", baseline.base_url + "/", False)):
                result = run_wrk(url, args.connections, args.seconds, auth)
                results[name].append(result)
                print(f"round {round_number} {name:8} {result['rps']:9.0f} req/s  "
                      f"p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms", flush=True)
        hot_calls = fake.calls
    finally:
        worker.cleanup()
        baseline.cleanup()

    calls, errors = cold_burst(fake, args.burst)
    fake.stop()

    wasm = (REPO / "build/index_bg.wasm").read_bytes()
    median = {name: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
              for name, runs in results.items()}
    token, base = median["token"], median["baseline"]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())

    print()
    print(f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}")
    print(f"wrk: {args.connections} connections, {args.seconds} s per run, {args.rounds} rounds "
          "alternating A/B; medians")
    print()
    print("| | requests/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    print(f"| hot `GET /token` | {token['rps']:.0f} | {token['p50']:.2f} | {token['p99']:.2f} |")
    print(f"| baseline worker | {base['rps']:.0f} | {base['p50']:.2f} | {base['p99']:.2f} |")
    print(f"| ratio | {token['rps'] / base['rps']:.2f}x | {token['p50'] / base['p50']:.2f}x "
          f"| {token['p99'] / base['p99']:.2f}x |")
    print()
    print(f"Upstream calls during the hot runs: {hot_calls}")
    print(f"Upstream calls for a {args.burst}-request cold burst: {calls} "
          f"({errors} non-200 answers)")
    print(f"wasm: {len(wasm) / 1024:.0f} KiB raw, {len(gzip.compress(wasm, 9)) / 1024:.0f} KiB gzipped")
    print(json.dumps({"token": token, "baseline": base, "cold_burst_calls": calls,
                      "wasm_bytes": len(wasm), "wasm_gzip_bytes": len(gzip.compress(wasm, 9))}))


if __name__ == "__main__":
    main()
