"""`scripts/demo`, as a first-time user runs it: every line it prints works, in the order
shown, and its first line is the status page's URL with the key to paste."""

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

from harness import REPO, free_port


def test_every_line_the_demo_prints_works_in_order():
    env = dict(os.environ, PORT=str(free_port()), FAKE_PORT=str(free_port()), NO_COLOR="1")
    demo = subprocess.Popen(["bash", "scripts/demo"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        printed, deadline = [], time.monotonic() + 180
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            printed.append(line.rstrip("\n"))
            if "Ctrl-C stops the demo." in line:
                break
        text = "\n".join(printed)
        assert "Ctrl-C stops the demo." in text, text[-3000:]
        page = re.search(r"Status page: (\S+)\s+\(paste the client key: (\S+)\)", text)
        assert page, text[-2000:]
        with urllib.request.urlopen(page.group(1), timeout=10) as reply:
            assert reply.status == 200 and "text/html" in reply.headers["Content-Type"]
        block = text[text.index("Then, in this order:"):]
        commands = [line.strip() for line in block.splitlines()
                    if line.startswith("    curl ") or line.startswith("    TOKEN=")]
        assert len(commands) == 6, commands
        script = "set -euo pipefail\n" + "\n".join(
            f"{command}\necho '--- ok'" for command in commands)
        ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                             timeout=120)
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        assert ran.stdout.count("--- ok") == 6
        assert '"openid":"o-demo"' in ran.stdout.replace(" ", ""), "the gateway call"
        # The key the demo prints for the page opens the page's /status.
        origin = page.group(1).rstrip("/")
        listing = urllib.request.Request(
            origin + "/status", headers={"Authorization": f"Bearer {page.group(2)}"})
        with urllib.request.urlopen(listing, timeout=10) as reply:
            assert reply.status == 200 and json.loads(reply.read())["accounts"]
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
