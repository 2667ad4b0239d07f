"""The benchmark (scripts/bench): hot GET /token against two floors, a constant-response
workers-rs worker (bench/floor) and a constant-response JavaScript worker (bench/baseline), all in
wrangler dev and driven by wrk, several rounds, each in its own order; the workerd processes' CPU
time per request, read from /proc; a 1000-request cold burst; the wasm's size. Prints a report;
asserts nothing (the targets are read off the report).

The gateway rows: a keyed gateway call (`GET /gateway/cgi-bin/user/info`) and the same call
passed through with the token the server issued (`GET /cgi-bin/user/info?access_token=…`),
against a minimal JavaScript pass-through worker (bench/passthrough) with and without the one
log line per call the gateway writes, and against the least a workers-rs gateway can do
(bench/floor with `UPSTREAM`: forward, read the answer, pass it back with the gateway's headers,
log the line), all forwarding to nginx answering fixed JSON (a Python fake would be the
bottleneck of all).

`--scale N` runs the scale run instead (bench/scale.py).

`--contender NAME=PATH/wrangler.toml` adds another build of the server to the same run (for
example an earlier commit, checked out and built elsewhere), with the same settings: its hot
`GET /token` and both its gateway rows.

The ratios between rows come twice: of the medians, and, for CPU and requests per second, taken
within each round (docs/benchmark.md says why)."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fake_wechat import FakeWeChat  # noqa: E402
from harness import CLIENT_KEY, Worker  # noqa: E402

APPID = "wxbench0123456789a"
SECRET = "bench-secret-0123456789"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def worker_vars(fake: FakeWeChat) -> dict[str, str]:
    return {
        "WECHAT_APPID": APPID,
        "WECHAT_APPSECRET": SECRET,
        "CLIENT_KEYS": CLIENT_KEY,
        "WECHAT_API_BASE": fake.base_url,
    }


FIXED_UPSTREAM = """
pid {dir}/nginx.pid;
error_log {dir}/error.log crit;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location = /cgi-bin/token {{
            return 200 '{{"access_token":"BENCH-TOKEN-0123456789","expires_in":7200}}';
        }}
        location = /healthz {{
            return 200 '{{"ok":true}}';
        }}
        location = /cgi-bin/user/info {{
            return 200 '{{"subscribe":1,"openid":"o-bench","nickname":"bench user"}}';
        }}
    }}
}}
"""


def start_fixed_upstream() -> tuple[subprocess.Popen, str, tempfile.TemporaryDirectory]:
    """nginx answering fixed JSON for the token and one API call, on 127.0.0.1."""
    folder = tempfile.TemporaryDirectory(prefix="bench-nginx-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = Path(folder.name) / "nginx.conf"
    conf.write_text(FIXED_UPSTREAM.format(dir=folder.name, port=port))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen([nginx, "-p", folder.name, "-c", str(conf), "-g", "daemon off;"],
                               stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return process, f"http://127.0.0.1:{port}", folder


def workerd_cpu_secs(worker: Worker) -> float:
    """User + system CPU time so far of the workerd processes this `wrangler dev` started (its
    process group), from /proc."""
    group = worker._process.pid  # wrangler runs in a session of its own: pgid == its pid
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        # fields[2] is the process group; [11] and [12] utime and stime (stat(5), from field 3).
        if name == "workerd" and int(fields[2]) == group:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def run_wrk(worker: Worker, path: str, connections: int, seconds: int,
            auth: bool) -> dict[str, float]:
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if auth:
        command += ["-H", f"Authorization: Bearer {CLIENT_KEY}"]
    cpu_before = workerd_cpu_secs(worker)
    output = subprocess.run(command + [worker.base_url + path], capture_output=True, text=True,
                            check=True).stdout
    cpu = workerd_cpu_secs(worker) - cpu_before
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"{path}: {non_2xx.group(1)} error answers during the run:\n{output}")
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": to_ms(re.search(r"\s50%\s+([\d.]+\w+)", output).group(1)),
        "p99": to_ms(re.search(r"\s99%\s+([\d.]+\w+)", output).group(1)),
        "cpu_us": cpu / requests * 1e6,
    }


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def interval(values: list[float], resamples: int = 2000) -> str:
    """A 95 % interval for the median of `values` (percentile bootstrap, fixed seed: a rerun on
    the same figures prints the same interval); "–" for fewer than 10, too few to mean much."""
    if len(values) < 10:
        return "–"
    draw = random.Random(0)
    medians = sorted(statistics.median(draw.choices(values, k=len(values)))
                     for _ in range(resamples))
    return f"{medians[int(resamples * 0.025)]:.2f}–{medians[int(resamples * 0.975) - 1]:.2f}"


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--only", choices=("all", "token", "gateway"), default="all",
                        help="run one group of rows (a quicker A/B while working on it)")
    parser.add_argument("--scale", type=int, default=0,
                        help="instead: the scale run with this many accounts (bench/scale.py)")
    parser.add_argument("--lifetime", type=int, default=90,
                        help="the scale run's token lifetime in seconds")
    parser.add_argument("--contender", action="append", default=[],
                        help="NAME=PATH/wrangler.toml: another build of the server")
    args = parser.parse_args()
    if args.scale:
        import scale
        scale.run(args.scale, args.lifetime, args.lifetime // 3, args.rounds, args.seconds,
                  run_wrk, REPO / "bench/floor/wrangler.toml")
        return

    fake = FakeWeChat(APPID, SECRET).start()
    # name -> (worker, path, needs a key)
    runs: dict[str, tuple[Worker, str, bool]] = {}
    contenders = [spec.split("=", 1) for spec in args.contender]
    try:
        if args.only in ("all", "token"):
            server = Worker(worker_vars(fake)).start()
            runs["hot GET /token"] = (server, "/token", True)
            answer = server.get_token()
            assert answer.status == 200, answer.text
            for name, config in contenders:
                other = Worker(worker_vars(fake), config=Path(config).resolve()).start()
                assert other.get_token().status == 200
                runs[f"{name}: hot GET /token"] = (other, "/token", True)
            body = {"BODY": "x" * len(answer.text)}
            runs["Rust floor"] = (Worker(body, config=REPO / "bench/floor/wrangler.toml").start(),
                                  "/", False)
            runs["JS floor"] = (Worker(body, config=REPO / "bench/baseline/wrangler.toml").start(),
                                "/", False)
        if args.only in ("all", "gateway"):
            nginx, upstream, nginx_dir = start_fixed_upstream()
            gateway_vars = worker_vars(fake) | {"WECHAT_API_BASE": upstream}
            keyed_path = "/gateway/cgi-bin/user/info?openid=o"
            gateway = Worker(gateway_vars).start()
            runs["gateway GET (keyed)"] = (gateway, keyed_path, True)
            # nginx issues this token (FIXED_UPSTREAM); the server recognizes it as its own.
            passed_path = "/cgi-bin/user/info?openid=o&access_token=BENCH-TOKEN-0123456789"
            runs["gateway GET (pass-through)"] = (gateway, passed_path, False)
            for name, config in contenders:
                other = Worker(gateway_vars, config=Path(config).resolve()).start()
                runs[f"{name}: gateway GET (keyed)"] = (other, keyed_path, True)
                runs[f"{name}: gateway GET (pass-through)"] = (other, passed_path, False)
            js_path = "/cgi-bin/user/info?openid=o&access_token=x"
            js_config = REPO / "bench/passthrough/wrangler.toml"
            runs["JS pass-through"] = (Worker({"UPSTREAM": upstream}, config=js_config).start(),
                                       js_path, False)
            logged = Worker({"UPSTREAM": upstream, "LOG_LINE": "1"}, config=js_config).start()
            runs["JS pass-through + log line"] = (logged, js_path, False)
            rust = Worker({"UPSTREAM": upstream}, config=REPO / "bench/floor/wrangler.toml").start()
            runs["Rust pass-through + log line"] = (rust, js_path, False)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
        for worker, path, auth in runs.values():  # warm every isolate up
            run_wrk(worker, path, args.connections, 2, auth)
        for round_number in range(1, args.rounds + 1):
            # A new order each round (seeded: a rerun runs the same orders), so that no row
            # always runs before another: a machine that slows down within a round would
            # otherwise favour one of the two.
            order = list(runs.items())
            random.Random(round_number).shuffle(order)
            for name, (worker, path, auth) in order:
                result = run_wrk(worker, path, args.connections, args.seconds, auth)
                results[name].append(result)
                print(f"round {round_number} {name:28} {result['rps']:7.0f} req/s  "
                      f"p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms  "
                      f"cpu {result['cpu_us']:6.0f} us/req", flush=True)
        hot_calls = fake.calls
    finally:
        for worker in {id(w): w for w, _, _ in runs.values()}.values():
            worker.cleanup()
        if "nginx" in locals():
            nginx.send_signal(signal.SIGTERM)
            nginx.wait(timeout=10)
            nginx_dir.cleanup()

    burst = args.burst if args.only != "gateway" else 0
    calls, errors = cold_burst(fake, burst) if burst else (None, 0)
    fake.stop()

    wasm = (REPO / "build/index_bg.wasm").read_bytes()
    keys = ("rps", "p50", "p99", "cpu_us")
    median = {name: {k: statistics.median(r[k] for r in rows) for k in keys}
              for name, rows in results.items()}
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())

    print()
    print(f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}")
    print(f"wrk: {args.connections} connections, {args.seconds} s per run, {args.rounds} rounds "
          "in shuffled order; medians. CPU: the workerd processes' user+system time over the run, "
          "per request.")
    print()
    print("| | requests/s | p50 ms | p99 ms | workerd CPU µs/request |")
    print("|---|---:|---:|---:|---:|")
    for name, m in median.items():
        print(f"| {name} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['cpu_us']:.0f} |")
    print()
    print("Ratios of the medians above; then per round: the ratio taken within each round, its "
          "median over the rounds [a 95 % interval for that median, printed for 10 rounds or more] "
          "(range).")
    print()
    print("| | requests/s | p50 ms | p99 ms | workerd CPU µs/request "
          "| per round: CPU | per round: requests/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")

    def ratio(label, a, b):
        m, n = median[a], median[b]
        per_round = {k: [x[k] / y[k] for x, y in zip(results[a], results[b])]
                     for k in ("cpu_us", "rps")}
        spread = {k: f"{statistics.median(v):.2f}x [{interval(v)}] ({min(v):.2f}–{max(v):.2f})"
                  for k, v in per_round.items()}
        print(f"| {label} | {m['rps'] / n['rps']:.2f}x | {m['p50'] / n['p50']:.2f}x "
              f"| {m['p99'] / n['p99']:.2f}x | {m['cpu_us'] / n['cpu_us']:.2f}x "
              f"| {spread['cpu_us']} | {spread['rps']} |")

    if "hot GET /token" in median:
        for floor in ("Rust floor", "JS floor"):
            ratio(f"`GET /token` ÷ {floor}", "hot GET /token", floor)
    if "JS pass-through" in median:
        for name in [n for n in median if "gateway GET" in n]:
            for floor in ("JS pass-through", "JS pass-through + log line",
                          "Rust pass-through + log line"):
                ratio(f"{name} ÷ {floor}", name, floor)
        ratio("gateway GET (keyed) ÷ gateway GET (pass-through)",
              "gateway GET (keyed)", "gateway GET (pass-through)")
        ratio("Rust pass-through + log line ÷ JS pass-through + log line",
              "Rust pass-through + log line", "JS pass-through + log line")
        ratio("JS pass-through ÷ JS pass-through + log line",
              "JS pass-through", "JS pass-through + log line")
    print()
    print(f"Upstream calls during the hot runs: {hot_calls} (one first fetch per server build)")
    if burst:
        print(f"Upstream calls for a {burst}-request cold burst: {calls} "
              f"({errors} non-200 answers)")
    print(f"wasm: {len(wasm) / 1024:.0f} KiB raw, {len(gzip.compress(wasm, 9)) / 1024:.0f} KiB gzipped")
    print(json.dumps({"median": median, "cold_burst_calls": calls, "wasm_bytes": len(wasm),
                      "wasm_gzip_bytes": len(gzip.compress(wasm, 9))}))


if __name__ == "__main__":
    main()
