"""The SDK recipes of docs/sdks.md that can run here, against the worker: wechat-api (Node.js,
from npm, installed by scripts/setup) pointed at the server by its `endpoint`, with a client key
as its secret. It gets its token from the server, never from WeChat, and a token WeChat stops
accepting behind its back is healed by the gateway before the SDK sees a 40001."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import CLIENT_KEY, assert_sent_for
from setups import SECOND, several

REPO = Path(__file__).resolve().parent.parent

# The recipe, then two calls; between them the test revokes the token at the fake.
SCRIPT = r"""
const WechatAPI = require("wechat-api");
const [base, appid, key] = process.argv.slice(2);
const api = new WechatAPI(appid, key);
api.endpoint = base;
const readline = require("readline").createInterface({ input: process.stdin });
function call(openid, then) {
  api.getUser(openid, (err, user) => {
    console.log(JSON.stringify(err ? { error: err.code || String(err) }
                                   : { openid: user.openid, token: api.token.accessToken }));
    then();
  });
}
call("n1", () => readline.once("line", () => call("n2", () => process.exit(0))));
"""


def test_wechat_api_gets_its_token_here_and_never_sees_a_rotation(start_worker, fake, tmp_path):
    node = shutil.which("node")
    assert node and (REPO / "node_modules" / "wechat-api").exists(), \
        "scripts/setup installs wechat-api from package-lock.json"
    worker = start_worker(**several(fake))
    script = tmp_path / "recipe.js"
    script.write_text(SCRIPT)
    env = {**os.environ, "NODE_PATH": str(REPO / "node_modules")}
    sdk = subprocess.Popen([node, str(script), worker.base_url, SECOND[0], CLIENT_KEY],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        first = json.loads(sdk.stdout.readline())
        assert first.get("openid") == "n1", first
        served = worker.request("GET", "/token?account=second").json["access_token"]
        assert first["token"] == served, "the SDK holds the server's token"
        before = fake.calls_for(SECOND[0])
        fake.revoked.add(served)  # WeChat stops accepting it behind the SDK's back
        sdk.stdin.write("go\n")
        sdk.stdin.flush()
        second = json.loads(sdk.stdout.readline())
        assert second.get("openid") == "n2", second
        assert sdk.wait(timeout=30) == 0
    finally:
        if sdk.poll() is None:
            sdk.kill()
            sdk.wait()
    assert fake.calls_for(SECOND[0]) == before + 1, "one heal, by the server"
    assert_sent_for(fake, SECOND[0])
    assert CLIENT_KEY not in json.dumps(fake.requests), "the client key never reached WeChat"


@pytest.fixture(autouse=True)
def _node_sdk_needs_no_network(monkeypatch):
    # The SDK talks to the worker on 127.0.0.1 only: no proxy from the environment.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
