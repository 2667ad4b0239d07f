"""Runs the built worker in `wrangler dev` (workerd, local KV and Durable Objects) and talks to
it over HTTP on 127.0.0.1. Standard library only."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WRANGLER = REPO / "node_modules" / ".bin" / "wrangler"
CLIENT_KEY = "test-client-key-0123456789abcdef"
# Calls to WeChat in one refresh that keeps failing transiently (busy, 5xx): backoff::MAX_ATTEMPTS.
ATTEMPTS_PER_REFRESH = 3
START_TIMEOUT_SECS = 120
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# No proxy from the environment: every request stays on loopback.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self):
        return json.loads(self.text)


def dotenv_literal(value: str) -> str:
    """Single-quoted dotenv values are taken literally (JSON's quotes and backslashes too)."""
    if "'" in value or "\n" in value:
        raise ValueError("a test variable cannot hold a single quote or a newline")
    return f"'{value}'"


# Ports handed to other processes are taken below the kernel's ephemeral range (32768 and up on
# Linux), where the tests' own outbound connections never land between the check and the bind.
_PORTS = range(20000, 32000)


def free_port() -> int:
    for _ in range(200):
        port = random.choice(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class PortTaken(RuntimeError):
    """workerd could not bind a port the harness chose."""


class Worker:
    """One `wrangler dev` process. `vars` become the worker's vars and secrets; a value of ""
    unsets a default from wrangler.toml (the worker treats blank as unset)."""

    def __init__(self, variables: dict[str, str], persist_dir: str | None = None,
                 config: Path | None = None):
        self.variables = variables
        self.config = config  # another wrangler.toml (the benchmark's baseline worker)
        self._own_dir = tempfile.TemporaryDirectory(prefix="wechat-edge-")
        self.persist_dir = persist_dir or os.path.join(self._own_dir.name, "state")
        self.log_path = Path(self._own_dir.name) / "wrangler.log"
        self.port = 0
        self._process: subprocess.Popen | None = None
        self._log_file = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Worker":
        # A port can still be taken between the check and workerd's bind (or by workerd's own
        # reload right after the build watcher's first scan): that start is retried on new ports.
        for attempt in range(3):
            try:
                return self._start_once()
            except PortTaken:
                if attempt == 2:
                    raise
                self.stop()
        raise AssertionError("unreachable")

    def _start_once(self) -> "Worker":
        env_file = Path(self._own_dir.name) / "vars.env"
        env_file.write_text("".join(f"{k}={dotenv_literal(v)}\n" for k, v in self.variables.items()))
        self.port = free_port()
        command = [
            str(WRANGLER), "dev",
            "--ip", "127.0.0.1", "--port", str(self.port),
            "--inspector-port", str(free_port()),
            "--persist-to", self.persist_dir,
            # An explicit env file also keeps a developer's .dev.vars out of the tests.
            "--env-file", str(env_file),
            "--test-scheduled",
            "--show-interactive-dev-session=false",
        ]
        if self.config:
            command += ["--config", str(self.config)]
        self._log_file = open(self.log_path, "ab")
        this_start = self._log_file.tell()
        env = dict(os.environ, WRANGLER_SEND_METRICS="false", NO_COLOR="1", FORCE_COLOR="0")
        self._process = subprocess.Popen(
            # A config of its own (the benchmark's floors, an older build) builds in its folder.
            command, cwd=self.config.parent if self.config else REPO,
            stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = self.log()
                if b"Address already in use" in self.log_path.read_bytes()[this_start:]:
                    raise PortTaken(log)
                raise RuntimeError(f"wrangler dev exited early:\n{log}")
            try:
                if self.request("GET", "/healthz", key=None).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"wrangler dev did not become ready:\n{self.log()}")

    def stop(self) -> None:
        """Stops wrangler and the workerd processes it started (same process group)."""
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._process:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._process.wait()
            self._process = None
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        self._own_dir.cleanup()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def json_log_events(self) -> list[dict]:
        """The worker's structured log lines (one JSON object per line)."""
        events = []
        for line in ANSI_ESCAPE.sub("", self.log()).splitlines():
            start = line.find("{")

            if start < 0:
                continue
            try:
                event = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and "event" in event:
                events.append(event)
        return events

    def request(self, method: str, path: str, key: str | None = CLIENT_KEY,
                body: str | bytes | None = None, headers: dict | None = None,
                timeout: float = 30) -> Reply:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers.setdefault("Authorization", f"Bearer {key}")
        if body and not any(h.lower() == "content-type" for h in all_headers):
            all_headers["Content-Type"] = "application/json"  # a JSON API's client

        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers=all_headers)
        try:
            with _http.open(req, timeout=timeout) as resp:
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                             resp.read().decode())
        except urllib.error.HTTPError as err:
            return Reply(err.code, {k.lower(): v for k, v in err.headers.items()},
                         err.read().decode())

    def get_token(self, **kwargs) -> Reply:
        return self.request("GET", "/token", **kwargs)

    def refresh(self, stale_token: str | None = None, **kwargs) -> Reply:
        body = json.dumps({"stale_token": stale_token}) if stale_token else None
        return self.request("POST", "/token/refresh", body=body, **kwargs)

    def fire_cron(self) -> Reply:
        return self.request("GET", "/__scheduled?cron=*/5+*+*+*+*", key=None)

    def events(self, name: str) -> list[dict]:
        return [e for e in self.json_log_events() if e["event"] == name]

    def run_cron(self, lines: int = 1, timeout: float = 15) -> list[dict]:
        """Fires the cron trigger and waits for its log lines (one per account, or one for a
        configuration error): what it did, not merely that `/__scheduled` answered."""
        seen = len(self.events("cron"))
        reply = self.fire_cron()
        assert reply.status == 200, reply.text
        assert wait_for(lambda: len(self.events("cron")) >= seen + lines, timeout), \
            f"the cron logged {len(self.events('cron')) - seen} of {lines} lines"
        return self.events("cron")[seen:]


def burst(count: int, call) -> list:
    """Runs `call()` from `count` threads released at the same moment."""
    barrier = threading.Barrier(count)

    def run(_):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def next_beijing_midnight() -> float:
    """WeChat's quota day ends at midnight in Beijing (UTC+8): computed with the calendar,
    apart from the worker's arithmetic."""
    beijing = timezone(timedelta(hours=8))
    tomorrow = datetime.now(beijing).date() + timedelta(days=1)
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=beijing).timestamp()


def wait_for(predicate, timeout: float = 10, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def assert_sent_for(fake, appid: str, last: int | None = None) -> None:
    """Every API call the fake received (or the `last` ones) carried `appid`'s token, as
    WeChat reads the account from the token, and none carried the edge's own `account` or
    the `appid` that named it."""
    calls = fake.api_requests[-last:] if last else fake.api_requests
    assert calls, "nothing reached WeChat"
    for call in calls:
        assert call["token_appid"] == appid, (call["path"], call["token_appid"], appid)
        assert "account" not in call["query"] and "appid" not in call["query"], call["query"]
