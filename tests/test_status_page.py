"""The status page (`GET /`) in a real browser: Debian's Chromium, headless, driven through
its chromedriver by Selenium. The page loads and shows nothing without a key; a refused key
shows the error line; the right key shows each account with its token's expiry; pages go
through many accounts; it fits a phone's width; a server that went away shows a line, not a
blank page. Screenshots go to test-artifacts/ (the README's is one of them)."""

import json
import re
import shutil
import urllib.request
from pathlib import Path

import pytest

from harness import CLIENT_KEY, REPO, wait_for
from setups import SECOND, several
from test_alerts import receiver  # noqa: F401 (the webhook fixture)

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    assert Path(chromium).exists() and Path(driver_path).exists(), \
        "chromium and chromium-driver are missing: scripts/setup installs Debian's packages"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    # The page's timers run when the test says (it polls every 30 s), its fetches are counted,
    # and the tab's visibility is the test's to set: installed before any page script runs.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CLOCK})
    yield driver
    driver.quit()


CLOCK = """
window.__timers = [];
window.__fetches = 0;
const realFetch = window.fetch.bind(window);
window.fetch = (...args) => { window.__fetches += 1; return realFetch(...args); };
window.setTimeout = (fn, ms) => { window.__timers.push({ fn, ms, live: true }); return window.__timers.length; };
window.clearTimeout = (id) => { if (id && window.__timers[id - 1]) window.__timers[id - 1].live = false; };
window.__visibility = "visible";
Object.defineProperty(document, "visibilityState", { get: () => window.__visibility, configurable: true });
Object.defineProperty(document, "hidden", { get: () => window.__visibility !== "visible", configurable: true });
window.__setVisibility = (state) => { window.__visibility = state; document.dispatchEvent(new Event("visibilitychange")); };
window.__pending = () => window.__timers.filter((t) => t.live).map((t) => t.ms);
window.__fire = () => { const t = window.__timers.find((t) => t.live); t.live = false; t.fn(); };
"""


def pending_timers(driver):
    return driver.execute_script("return window.__pending()")


def fetches(driver):
    return driver.execute_script("return window.__fetches")


def text_of(driver, element_id):
    return driver.find_element("id", element_id).text


def enter_key(driver, key):
    field = driver.find_element("id", "key")
    field.clear()
    field.send_keys(key)
    driver.find_element("css selector", "#key-form button[type=submit]").click()


def cards(driver):
    return driver.find_elements("css selector", "#accounts .card")


def shown(driver):
    """The cards as [(account, text)], read in one go: the page redraws them every 10 s, and
    an element found before a redraw is gone after it."""
    return [tuple(pair) for pair in driver.execute_script(
        "return [...document.querySelectorAll('#accounts .card')]"
        ".map(c => [c.dataset.account, c.innerText])")]


def screenshot(driver, name):
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


def test_the_page_is_self_contained_and_reveals_nothing_without_a_key(start_worker):
    worker = start_worker()
    with urllib.request.urlopen(worker.base_url + "/", timeout=10) as reply:
        html = reply.read().decode()
        csp = reply.headers["Content-Security-Policy"]
        assert reply.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in csp and "script-src 'nonce-" in csp
    assert "unsafe-inline" not in csp and "connect-src 'self'" in csp
    assert "src=" not in html and "href=" not in html, "no external assets"
    assert CLIENT_KEY not in html and worker.variables["WECHAT_APPID"] not in html
    with urllib.request.urlopen(worker.base_url + "/", timeout=10) as again:
        second_csp = again.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert nonce not in second_csp, "a fresh nonce for every answer"


def test_the_page_shows_accounts_errors_and_pages_in_a_browser(start_worker, fake, browser):
    worker = start_worker(**several(fake))
    token = worker.get_token().json
    browser.get(worker.base_url + "/?limit=2")
    assert "client key" in text_of(browser, "notice")
    assert cards(browser) == []
    enter_key(browser, "wrong-key-0123456789abcdef")
    assert wait_for(lambda: "Key refused" in text_of(browser, "notice"), 10)
    assert cards(browser) == []
    screenshot(browser, "status-page-refused.png")
    enter_key(browser, CLIENT_KEY)
    assert wait_for(lambda: len(shown(browser)) == 2, 10), text_of(browser, "notice")
    account, text = shown(browser)[0]
    assert account == fake.appid
    expiry = browser.execute_script(
        "return new Date(arguments[0] * 1000).toLocaleString()", token["expires_at"])
    assert expiry in text and "official_account · classic" in text
    assert "calls today" in text and "auto refresh" in text
    assert browser.execute_script("return sessionStorage.length") == 1
    assert browser.execute_script("return localStorage.length") == 0, "the key stays in the tab"
    screenshot(browser, "status-page.png")
    browser.find_element("id", "next").click()
    assert wait_for(lambda: [a for a, _ in shown(browser)] == ["corp-app", "shop"], 10), \
        shown(browser)
    # A phone's width: the cards stack, nothing runs off the side.
    for width in (390, 320):
        browser.set_window_size(width, 844)
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"), width
    screenshot(browser, "status-page-phone.png")
    # The server goes away: the page says so on its own next refresh, and stops asking.
    worker.stop()
    assert "cannot be reached" not in text_of(browser, "notice")
    assert pending_timers(browser) == [30000]
    browser.execute_script("window.__fire()")
    assert wait_for(lambda: "cannot be reached" in text_of(browser, "notice"), 14)
    assert pending_timers(browser) == []
    assert browser.find_element("id", "retry").is_displayed()


def test_the_page_shows_tickets_errors_and_the_platform(start_worker, fake, browser):
    from test_platform import component_vars, push
    import wechat_push

    worker = start_worker(**component_vars(fake))
    worker.fake_platform = fake.platform
    assert worker.request("GET", "/ticket?type=jsapi").status == 200
    fake.mode = "busy"
    stale = worker.get_token().json["access_token"]
    import json as _json
    worker.request("POST", "/token/refresh", body=_json.dumps({"stale_token": stale}))
    ticket = fake.platform.new_ticket()
    assert push(worker, wechat_push.ticket_message(fake.platform.appid, ticket)).text == \
        "success"
    browser.get(worker.base_url + "/")
    enter_key(browser, CLIENT_KEY)
    assert wait_for(lambda: len(shown(browser)) == 2, 10), text_of(browser, "notice")
    (_, account), (component_id, component) = shown(browser)
    assert "jsapi ticket" in account and "1 calls today" in account
    assert "last error" in account and "WeChat is busy" in account
    assert component_id == fake.platform.appid
    assert "component · component" in component and "verify ticket" in component
    assert "0 min old" in component
    screenshot(browser, "status-page-platform.png")


def test_the_page_shows_a_wecom_suite_and_a_corporation_it_serves(start_worker, fake, browser):
    from test_admin import KEY_A
    from test_wecom_provider import CORP, CORPID, SUITE_ID, authorize, push_ticket

    worker = start_worker(WECOM_API_BASE=fake.base_url, ACCOUNTS_ENCRYPTION_KEY=KEY_A,
                          **fake.wecom_provider.worker_vars())
    push_ticket(worker, fake)
    authorize(worker, fake)
    assert wait_for(lambda: worker.events("wecom_auth_info"), 15)
    browser.get(worker.base_url + "/")
    enter_key(browser, CLIENT_KEY)

    def card(account):
        return dict(shown(browser)).get(account, "")
    assert wait_for(lambda: "agentid" in card(CORP), 15), shown(browser)
    agentid = fake.wecom_provider.agentid(CORPID)
    assert "permanent code" in card(CORP) and "kept" in card(CORP)
    assert f"Fake Corp · Fake App (agentid {agentid})" in card(CORP)
    assert "suite ticket" in card(SUITE_ID) and re.search(r"\d+ min old", card(SUITE_ID))
    page = " ".join(text for _, text in shown(browser))
    assert not any(secret in page for secret in fake.wecom_provider.all_secrets)


def test_the_page_polls_every_30_s_only_while_visible_and_stops_after_an_error(
        start_worker, fake, browser):
    worker = start_worker(**several(fake))
    worker.get_token()
    browser.get(worker.base_url + "/")
    enter_key(browser, CLIENT_KEY)
    assert wait_for(lambda: len(shown(browser)) == 4, 10), text_of(browser, "notice")
    assert fetches(browser) == 1 and pending_timers(browser) == [30000]
    assert "every 30 s" in text_of(browser, "updated")
    browser.execute_script("window.__fire()")
    assert wait_for(lambda: fetches(browser) == 2 and pending_timers(browser) == [30000], 10)
    # Hidden: no poll is pending, and none happens however long it stays hidden.
    browser.execute_script("window.__setVisibility('hidden')")
    assert pending_timers(browser) == [] and fetches(browser) == 2
    # Visible again: it loads at once, and polls on.
    browser.execute_script("window.__setVisibility('visible')")
    assert wait_for(lambda: fetches(browser) == 3 and pending_timers(browser) == [30000], 10)
    # An error stops the polling until the user asks again.
    browser.get(worker.base_url + "/?limit=101")
    assert wait_for(lambda: "limit must be" in text_of(browser, "notice"), 10)
    assert fetches(browser) == 1 and pending_timers(browser) == []
    browser.execute_script("window.__setVisibility('hidden'); window.__setVisibility('visible')")
    assert fetches(browser) == 1, "a stopped page does not resume on its own"
    retry = browser.find_element("id", "retry")
    assert retry.is_displayed()
    retry.click()
    assert wait_for(lambda: fetches(browser) == 2, 10)
    assert pending_timers(browser) == [], "still failing: still stopped"
    # "Forget key": the key leaves the tab, and nothing polls.
    browser.find_element("id", "forget").click()
    assert browser.execute_script("return sessionStorage.length") == 0
    assert "Key forgotten" in text_of(browser, "notice") and pending_timers(browser) == []
    assert not browser.find_element("id", "retry").is_displayed()


def test_the_summary_the_filter_and_each_cards_last_day(start_worker, fake, browser, receiver):
    # 3 of 10 used leaves 70%: under QUOTA_LOW_PERCENT=80, the healthy main account is under
    # the quota_low alert.
    worker = start_worker(**several(fake, QUOTA_WATCH_PATHS="/cgi-bin/message/custom/send",
                                    TEST_QUOTA_WATCH_SECS="2", QUOTA_LOW_PERCENT="80",
                                    ALERT_WEBHOOK_URL=receiver.url, ALERT_FORMAT="json"))
    assert worker.get_token().status == 200
    assert worker.request("GET", "/token?account=shop").status == 200
    fake.modes[SECOND[0]] = "busy"
    assert worker.request("GET", "/token?account=second").status == 502
    fake.openapi.limits["/cgi-bin/message/custom/send"] = 10
    for n in range(3):
        message = {"touser": "o1", "msgtype": "text", "text": {"content": f"hi {n}"}}
        sent = worker.request("POST", "/gateway/cgi-bin/message/custom/send",
                              body=json.dumps(message))
        assert sent.status == 200, sent.text

    def watched_use():
        entry = worker.request("GET", f"/status?account={fake.appid}").json["accounts"][0]
        return entry.get("watched_quotas", {}).get("/cgi-bin/message/custom/send", {}).get("used")
    # The main account's object asks for its watched quota on its alarm.
    assert wait_for(lambda: watched_use() == 3, 10), watched_use()

    def alerts():
        accounts = worker.request("GET", "/status").json["accounts"]
        return {e["account"]: e.get("alerts", []) for e in accounts}
    assert wait_for(lambda: "quota_low" in alerts()[fake.appid], 10), alerts()
    browser.get(worker.base_url + "/")
    enter_key(browser, CLIENT_KEY)
    assert wait_for(lambda: len(shown(browser)) == 4, 10), text_of(browser, "notice")
    summary = text_of(browser, "summary")
    assert "2 healthy" in summary and "1 refreshing" in summary and "1 failing" in summary, summary
    assert "0 paused" in summary and "0 blocked" in summary
    # The alerts the page's own answer carried, counted (second's no_valid_token may join).
    counted = re.search(r"(\d+) alerts? active", summary)
    assert counted and int(counted.group(1)) >= 1, summary
    assert "quota low" in dict(shown(browser))[fake.appid]
    # Each reporting card draws its last day: one bar an hour with calls; failures in red.
    bars = browser.execute_script("""
        return Object.fromEntries([...document.querySelectorAll('#accounts .card')].map(c => [
            c.dataset.account,
            [c.querySelectorAll('dd:not(.quota) svg.spark rect.calls').length,
             c.querySelectorAll('svg.spark rect.failures').length,
             (c.querySelector('dd:not(.quota) svg.spark title') || {}).textContent]]))""")
    # (Two bars, not one, when the calls straddle an hour.)
    assert bars[fake.appid][0] in (1, 2) and bars[fake.appid][1] == 0, bars
    assert bars[fake.appid][2].endswith(" 0 failed"), bars
    assert bars["second"][0] in (1, 2) and bars["second"][1] == bars["second"][0], bars
    assert bars["second"][2].endswith(f"{fake.calls_for(SECOND[0])} failed"), bars
    main_text = dict(shown(browser))[fake.appid]
    assert "/cgi-bin/message/custom/send" in main_text and "3 / 10 today" in main_text
    quota_title = browser.execute_script(
        "return document.querySelector(`#accounts .card[data-account='${arguments[0]}'] "
        "dd.quota svg.spark title`).textContent", fake.appid)
    assert quota_title == "3 of 10 used today", quota_title
    # Its use is drawn from the hours the object kept: a bar for this hour, 3 of 10 tall.
    used_bars = browser.execute_script(
        "return [...document.querySelectorAll(`#accounts .card[data-account='${arguments[0]}'] "
        "dd.quota svg.spark rect.used`)].map(r => Number(r.getAttribute('height')))", fake.appid)
    assert used_bars[-1:] == [7], used_bars  # round(3 / 10 * 24)
    screenshot(browser, "status-page.png")
    # Only what needs attention: the healthy cards hide, unless under an alert.
    browser.find_element("id", "attention").click()
    visible = browser.execute_script(
        "return [...document.querySelectorAll('#accounts .card')].filter(c => !c.hidden)"
        ".map(c => c.dataset.account)")
    assert sorted(visible) == sorted([fake.appid, "corp-app", "second"]), visible
    screenshot(browser, "status-page-attention.png")
