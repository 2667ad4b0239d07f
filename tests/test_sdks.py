"""The SDK recipes of docs/sdks.md that can run here, against the worker: wechat-api (Node.js,
from npm, installed by scripts/setup) with the recipe's token getter, which reads `GET /token`
and keeps what it read for a short while, and its API calls through the gateway's
pass-through. It never asks WeChat for a token, a token WeChat stops accepting behind its back
is healed by the gateway, and a token the server replaced is dropped by the SDK before the
server stops accepting it."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from harness import CLIENT_KEY, assert_sent_for
from setups import SECOND, several

REPO = Path(__file__).resolve().parent.parent

# The recipe of docs/sdks.md (its `KEEP_MS` shortened to the test's short tokens), then one
# call per line the test writes.
SCRIPT = r"""
const WechatAPI = require("wechat-api");
const [base, account, key, keepMs] = process.argv.slice(2);
const KEEP_MS = Number(keepMs);
let kept = null;
function getToken(callback) {
  if (kept && Date.now() < kept.readAt + KEEP_MS) return callback(null, kept.token);
  fetch(`${base}/token?account=${account}`, { headers: { Authorization: `Bearer ${key}` } })
    .then((answer) => answer.json())
    .then((body) => {
      kept = { readAt: Date.now(),
               token: { accessToken: body.access_token, expireTime: body.expires_at * 1000 } };
      callback(null, kept.token);
    }, callback);
}
const api = new WechatAPI("", key, getToken, (token, callback) => callback(null));
api.endpoint = base;
require("readline").createInterface({ input: process.stdin }).on("line", (openid) => {
  api.getUser(openid, (err, user) => {
    console.log(JSON.stringify(err ? { error: err.code || String(err) }
                                   : { openid: user.openid, token: api.token.accessToken }));
  });
});
"""


class Sdk:
    def __init__(self, worker, account, keep_ms, tmp_path):
        node = shutil.which("node")
        assert node and (REPO / "node_modules" / "wechat-api").exists(), \
            "scripts/setup installs wechat-api from package-lock.json"
        script = tmp_path / "recipe.js"
        script.write_text(SCRIPT)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["NODE_PATH"] = str(REPO / "node_modules")
        self.process = subprocess.Popen(
            [node, str(script), worker.base_url, account, CLIENT_KEY, str(keep_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def get_user(self, openid):
        self.process.stdin.write(openid + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self):
        self.process.kill()
        self.process.wait(timeout=10)


def test_wechat_api_takes_its_token_from_the_server_across_revocations_and_rotations(
        start_worker, fake, tmp_path):
    fake.expires_in = 30  # a replaced token is accepted until its own expiry: 30 s at most
    worker = start_worker(**several(fake, MIN_REFRESH_INTERVAL_SECS="0",
                                    REFRESH_MARGIN_SECS="5"))
    sdk = Sdk(worker, "second", keep_ms=2000, tmp_path=tmp_path)
    try:
        first = sdk.get_user("n1")
        served = worker.request("GET", "/token?account=second").json["access_token"]
        assert first == {"openid": "n1", "token": served}, first
        # WeChat stops accepting it behind the SDK's back: the gateway heals it, once.
        before = fake.calls_for(SECOND[0])
        fake.revoked.add(served)
        assert sdk.get_user("n2").get("openid") == "n2"
        assert fake.calls_for(SECOND[0]) == before + 1, "one heal, by the server"
        # The server replaces its token; once the old one is past its window, the SDK holds
        # the new one (it re-read the server), and its calls go on.
        current = worker.request("GET", "/token?account=second").json["access_token"]
        replaced = worker.request("POST", "/token/refresh?account=second",
                                  body=json.dumps({"stale_token": current})).json
        time.sleep(31)
        later = sdk.get_user("n3")
        assert later.get("openid") == "n3", later
        assert later["token"] == replaced["access_token"] or fake.is_valid(later["token"])
    finally:
        sdk.stop()
    assert_sent_for(fake, SECOND[0])
    assert CLIENT_KEY not in json.dumps(fake.requests), "the client key never reached WeChat"
    assert all(r["endpoint"] != "token" or r.get("appid") == SECOND[0] for r in fake.requests)
