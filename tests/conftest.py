import re
import secrets

import pytest

from fake_wechat import FakeWeChat
from harness import CLIENT_KEY, Worker
from setups import EXTRA_APPS

APPID = "wxfake0123456789ab"
APPSECRET = "fake-secret-" + secrets.token_hex(10)


def default_vars(fake: FakeWeChat) -> dict[str, str]:
    return {
        "WECHAT_APPID": fake.appid,
        "WECHAT_APPSECRET": fake.secret,
        "CLIENT_KEYS": CLIENT_KEY,
        "WECHAT_API_BASE": fake.base_url,
        # Every origin on loopback: the tests' fault switches (TEST_*) are honoured only so.
        "WECOM_API_BASE": fake.base_url,
        "UPSTREAM_TIMEOUT_MS": "2500",
    }


@pytest.fixture(scope="session")
def fake():
    server = FakeWeChat(APPID, APPSECRET).start()
    for appid, secret in EXTRA_APPS:
        server.add_app(appid, secret)

    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_fake(fake):
    fake.reset()
    yield


def assert_log_keeps_secrets(worker: Worker, fake: FakeWeChat) -> None:
    log = worker.log()
    assert fake.secret not in log, "the appsecret appeared in the worker's log"
    for value in worker.variables.values():
        if value.startswith("fake-secret"):
            assert value not in log, "a configured secret appeared in the worker's log"
    for secret in list(fake.apps.values()):
        assert secret not in log, "an appsecret appeared in the worker's log"
    for name in ("ADMIN_KEYS", "ACCOUNTS_ENCRYPTION_KEY"):
        for value in worker.variables.get(name, "").split(","):
            assert not value.strip() or value.strip() not in log, f"{name} appeared in the log"
    platform = fake.platform
    for value in [*platform.all_secrets, platform.secret, platform.token,
                  platform.encoding_aes_key]:
        assert value not in log, "a platform secret, ticket, code or refresh token in the log"
    for token in fake.all_issued:
        assert token not in log, "an access_token appeared in the worker's log"
    for ticket in fake.tickets_issued:
        assert ticket not in log, "a ticket appeared in the worker's log"
    wecom = fake.wecom_provider
    for value in [*wecom.all_secrets, *wecom.tickets, *wecom.sent_tickets, *wecom.tokens]:
        assert value not in log, "a WeCom suite's or provider's secret, ticket or token in the log"

    assert CLIENT_KEY not in log, "a client key appeared in the worker's log"
    # Every configured key (scopes cut off), those the SDK tests send in URLs included.
    for entry in worker.variables.get("CLIENT_KEYS", "").split(","):
        key = re.split(r"[@:]", entry.strip())[0]
        if key:
            assert key not in log, "a client key appeared in the worker's log"


class WorkerFactory:
    """Starts workers against the fake; stops them and checks their logs at teardown."""

    def __init__(self, fake: FakeWeChat):
        self.fake = fake
        self.workers: list[Worker] = []

    def __call__(self, persist_dir: str | None = None, **overrides: str) -> Worker:
        variables = default_vars(self.fake) | overrides
        worker = Worker(variables, persist_dir)
        self.workers.append(worker)
        return worker.start()

    def close(self) -> None:
        try:
            for worker in self.workers:
                worker.stop()
                assert_log_keeps_secrets(worker, self.fake)
        finally:
            for worker in self.workers:
                worker.cleanup()


@pytest.fixture
def start_worker(fake):
    factory = WorkerFactory(fake)
    yield factory
    factory.close()


@pytest.fixture(scope="class")
def class_workers(fake):
    """For test classes that share one worker (its state carries over between their tests)."""
    factory = WorkerFactory(fake)
    yield factory
    factory.close()
