"""End to end: the live status page of a real `onetouch serve`, in a real headless browser (Debian's
chromium driven by chromedriver through Selenium). The page is signed into with an admin token; a
host created afterwards is seen under way and then ready, in the same page, without a reload.
ONETOUCH_SCREENSHOT=PATH saves what the browser showed at the end (docs/status-page.png is one)."""
import os
import shutil
import time
from pathlib import Path

import pytest

from test_onetouch_ec2 import Stack

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover
    webdriver = None

REASON = ("selenium is not installed (scripts/install-test-deps)" if webdriver is None else
          next((f"{tool} is not installed (scripts/install-test-deps)" for tool in ("chromium", "chromedriver")
                if not shutil.which(tool)), None))
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def host_state(driver, name):
    """The state the page shows for a host, read in one script call: the live part is replaced every
    2 s, so an element found first and read afterwards may be gone (stale) in between."""
    return driver.execute_script(
        "const row = document.querySelector(`tr[data-host='${arguments[0]}']`); return row ? row.dataset.state : null;", name)


def text_of(driver, selector):
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", selector)


def test_the_page_shows_a_host_going_from_under_way_to_ready_live(tmp_path, browser):
    # EC2 lists new instances 3 s late (the fault front), so provision lasts long enough to be seen.
    stack = Stack(tmp_path, front_args="--lag 3", agent_args="--fail-host db-01 --fail-host db-01.onetouch.test")
    try:
        stack.start_serve()
        browser.get(stack.url + "/status")
        # A form's answer is a new page: wait for it rather than read the old one (a click does not
        # wait for the navigation it starts).
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "token"))
        browser.find_element(By.ID, "token").send_keys("not-a-token-of-this-serve")
        browser.find_element(By.CSS_SELECTOR, "form button").click()
        problem = WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".problem"))
        assert "not one of serve" in problem[0].text
        browser.find_element(By.ID, "token").send_keys(stack.token)
        browser.find_element(By.CSS_SELECTOR, "form button").click()
        WebDriverWait(browser, 10).until(lambda d: "signed in as" in (text_of(d, "header") or ""))
        marker = browser.execute_script("window.onetouchMarker = Math.random(); return window.onetouchMarker;")
        assert "No hosts yet" in text_of(browser, "#live")

        stack.create(["web-01"])
        seen = []

        def under_way(driver):
            state = host_state(driver, "web-01")
            if state and state not in seen:
                seen.append(state)
            return state in ("pending", "running", "waiting")

        WebDriverWait(browser, 30, poll_frequency=0.1).until(under_way)
        WebDriverWait(browser, 120, poll_frequency=0.2).until(lambda d: (under_way(d) or True) and host_state(d, "web-01") == "ready")
        assert seen[0] in ("pending", "running", "waiting") and seen[-1] == "ready", seen
        assert browser.execute_script("return window.onetouchMarker;") == marker, "the page was never reloaded"
        timeline = text_of(browser, 'tr[data-host="web-01"] .timeline')
        for step in ("provision", "preregister", "bootstrap", "attach-volume", "config-pull", "complete"):
            assert step in timeline, timeline

        # A failure shows with its reason and the command that fixes it.
        stack.create(["web-02", "web-03", "db-01"])
        settled = stack.wait_settled(timeout=120)
        assert {h["name"]: h["state"] for h in settled} == {"web-01": "ready", "web-02": "ready", "web-03": "ready", "db-01": "failed"}
        WebDriverWait(browser, 10, poll_frequency=0.2).until(
            lambda d: text_of(d, 'article.failure[data-host="db-01"]')
            and host_state(d, "web-02") == "ready" and host_state(d, "web-03") == "ready")
        failure = text_of(browser, 'article.failure[data-host="db-01"]')
        assert "onetouch retry db-01" in failure, failure
        assert browser.execute_script("return window.onetouchMarker;") == marker
        time.sleep(2.5)  # one more refresh, so the screenshot shows the settled fleet
        if os.environ.get("ONETOUCH_SCREENSHOT"):
            browser.save_screenshot(os.environ["ONETOUCH_SCREENSHOT"])
    finally:
        stack.stop()
