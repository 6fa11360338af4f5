"""The dashboard page and the browser client module in headless Chromium (Debian chromium + chromedriver, driven
with Selenium), against the built bridge on a mock cluster with the test monitor publishing."""
import functools
import http.server
import json
import os
import pathlib
import shutil
import threading
import time
import uuid

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import ROOT, Bridge, job_state, metric, wait_for
from monitor import Monitor, a_job

# Screenshots land here (CI keeps the folder as the run's artefacts).
ARTIFACTS = pathlib.Path(os.environ.get("TEST_ARTIFACTS", ROOT / "Tests" / "e2e" / "artifacts"))


@pytest.fixture(scope="module")
def browser():
    assert shutil.which("chromium") and shutil.which("chromedriver"), "scripts/bootstrap.sh --test-tools installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    driver.set_page_load_timeout(20)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def fresh(driver):
    """A blank page and an empty console log: nothing of the previous test (a page still reconnecting to a bridge that
    is gone) is counted against the next."""
    driver.get("about:blank")
    driver.get_log("browser")
    return driver


def console_problems(driver, allowed=()):
    """Console errors and warnings since the last call (the log is drained by reading it), minus `allowed` ones."""
    return [entry for entry in driver.get_log("browser")
            if entry["level"] in ("SEVERE", "WARNING") and not any(text in entry["message"] for text in allowed)]


def wait_until(driver, condition, timeout=30, message=""):
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d), message)


def attribute(driver, selector, name):
    elements = driver.find_elements(By.CSS_SELECTOR, selector)
    return elements[0].get_attribute(name) if elements else None


def text(driver, selector):
    elements = driver.find_elements(By.CSS_SELECTOR, selector)
    return elements[0].text.strip() if elements else None


def test_the_client_modules_unit_tests_pass_in_the_browser(browser):
    """web/tests/client-tests.html: the client module against a fake WebSocket, in the real browser."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(ROOT / "web"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fresh(browser).get(f"http://127.0.0.1:{server.server_address[1]}/tests/client-tests.html")
        results = wait_until(browser, lambda d: d.execute_script("return window.__testResults && window.__testResults.done ? window.__testResults : null"),
                             timeout=60, message="the client tests never finished")
    finally:
        server.shutdown()
    assert results["failed"] == 0, json.dumps(results["failures"], indent=1)
    assert results["passed"] >= 15, f"only {results['passed']} client tests ran"
    assert console_problems(browser) == []


@pytest.fixture
def published(mock_kafka):
    """A bridge on a mock cluster that outlives it, and the monitor that publishes to it."""
    group = "browser-" + uuid.uuid4().hex[:6]
    bridge = Bridge("--insecure-no-auth", "--group-id", group, kafka=mock_kafka.bootstrap).wait_ready()
    yield bridge, Monitor(mock_kafka.bootstrap), group
    if bridge.process.poll() is None:
        code, _ = bridge.stop()
        assert code == 0, bridge.exit_report(40)


def publish(monitor, job, events):
    for e in events:
        monitor.send(job, e)
    monitor.flush()


def test_the_job_list_and_a_job_view_reach_the_aggregates_final_numbers(browser, published):
    bridge, monitor, _ = published
    job = "job_page_" + uuid.uuid4().hex[:6]
    other = "job_other_" + uuid.uuid4().hex[:6]
    events = a_job(job, videos=12, fail={4, 9})
    publish(monitor, job, events[:10])
    publish(monitor, other, a_job(other, videos=2))
    fresh(browser).get(bridge.http_url + "/")
    wait_until(browser, lambda d: attribute(d, '[data-testid="connection-status"]', "data-state") == "open", message="the feed never opened")
    row = f'[data-testid="job-row"][data-job-id="{job}"]'
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), message="the job never appeared in the list")
    assert browser.find_elements(By.CSS_SELECTOR, f'[data-testid="job-row"][data-job-id="{other}"]')
    # Live: the rest of the job arrives while the list is open, and its row reaches the final numbers.
    publish(monitor, job, events[10:])
    assert wait_for(lambda: (job_state(bridge, job) or {}).get("state") == "completed", timeout=20)
    final = job_state(bridge, job)
    wait_until(browser, lambda d: attribute(d, row, "data-state") == "completed", message="the row never showed completed")
    assert float(attribute(browser, row + ' [role="progressbar"]', "aria-valuenow")) == final["percent_complete"] == 100
    assert text(browser, row + ' [data-testid="job-completed"]') == str(final["completed"]) == "10"
    assert text(browser, row + ' [data-testid="job-failed"]') == str(final["failed"]) == "2"
    assert text(browser, row + ' [data-testid="job-total"]') == str(final["total_videos"])
    # Search and the state filter narrow the list.
    search = browser.find_element(By.CSS_SELECTOR, '[data-testid="job-search"]')
    search.send_keys(other)
    wait_until(browser, lambda d: [e.get_attribute("data-job-id") for e in d.find_elements(By.CSS_SELECTOR, '[data-testid="job-row"]')] == [other])
    search.clear()
    search.send_keys(" ")
    search.clear()
    Select(browser.find_element(By.CSS_SELECTOR, '[data-testid="job-state-filter"]')).select_by_value("running")
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="empty-state"]') or
               not d.find_elements(By.CSS_SELECTOR, '[data-testid="job-row"]'), message="no job is running: the list must be empty")
    Select(browser.find_element(By.CSS_SELECTOR, '[data-testid="job-state-filter"]')).select_by_value("")
    browser.save_screenshot(str(ARTIFACTS / "job-list.png"))

    # The job view: the seed's panels with the aggregate's numbers, and the failed videos with their errors.
    browser.find_element(By.CSS_SELECTOR, row + f' a[href="#/jobs/{job}"]').click()
    view = f'[data-testid="job-view"][data-job-id="{job}"]'
    wait_until(browser, lambda d: attribute(d, view, "data-state") == "completed", message="the job view never showed completed")
    assert float(attribute(browser, '[data-testid="job-progress"]', "aria-valuenow")) == 100
    assert text(browser, '[data-testid="count-completed"]') == "10" and text(browser, '[data-testid="count-failed"]') == "2"
    assert text(browser, '[data-testid="job-total"]') == "12"
    Select(browser.find_element(By.CSS_SELECTOR, '[data-testid="video-state-filter"]')).select_by_value("failed")
    wait_until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-testid="video-row"]')) == 2)
    failed = browser.find_elements(By.CSS_SELECTOR, '[data-testid="video-row"]')
    assert {e.get_attribute("data-video-id") for e in failed} == {"vid_004", "vid_009"}
    assert all(e.get_attribute("data-state") == "failed" for e in failed)
    assert all("renderer crashed" in e.find_element(By.CSS_SELECTOR, '[data-testid="video-error"]').text for e in failed)
    browser.save_screenshot(str(ARTIFACTS / "job-view.png"))
    assert console_problems(browser) == []


def test_a_restarted_bridge_shows_reconnecting_then_resumes_with_nothing_missed(browser, published, mock_kafka):
    bridge, monitor, group = published
    job = "job_restart_" + uuid.uuid4().hex[:6]
    events = a_job(job, videos=20, fail={7})
    publish(monitor, job, events[:25])
    assert wait_for(lambda: (job_state(bridge, job) or {}).get("events_applied") == 25, timeout=20)
    applied = time.time()
    assert wait_for(lambda: metric(bridge, "progress_bridge_last_commit_timestamp_seconds") > applied, timeout=20)
    fresh(browser).get(f"{bridge.http_url}/#/jobs/{job}")
    view = f'[data-testid="job-view"][data-job-id="{job}"]'
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, view), message="no job view")
    wait_until(browser, lambda d: attribute(d, '[data-testid="connection-status"]', "data-state") == "open")
    port = bridge.port
    code, _ = bridge.stop()
    assert code == 0, bridge.exit_report(40)
    wait_until(browser, lambda d: attribute(d, '[data-testid="connection-status"]', "data-state") in ("reconnecting", "connecting"),
               message="the page never showed that it is reconnecting")
    # The first close is the bridge's own (1001, going away); later ones are refused reconnects (1006).
    assert browser.execute_script("return window.__dashboard.client().health().lastClose.code") in (1001, 1006)
    wait_until(browser, lambda d: int(text(d, '[data-testid="reconnect-attempts"]') or "0") >= 1, timeout=10,
               message="the page never counted a reconnect attempt")
    browser.save_screenshot(str(ARTIFACTS / "reconnecting.png"))
    # Meanwhile the monitor finishes the job; a new bridge (same port, same group) picks it up from Kafka.
    publish(monitor, job, events[25:])
    again = Bridge("--insecure-no-auth", "--group-id", group, kafka=mock_kafka.bootstrap, port=port).wait_ready()
    try:
        assert wait_for(lambda: (job_state(again, job) or {}).get("state") == "completed", timeout=30)
        final = job_state(again, job)
        wait_until(browser, lambda d: attribute(d, view, "data-state") == "completed", timeout=40,
                   message="the page never caught up after the restart")
        assert attribute(browser, '[data-testid="connection-status"]', "data-state") == "open"
        assert text(browser, '[data-testid="count-completed"]') == str(final["completed"]) == "19"
        assert text(browser, '[data-testid="count-failed"]') == str(final["failed"]) == "1"
        assert float(attribute(browser, '[data-testid="job-progress"]', "aria-valuenow")) == 100
        # Every video the aggregate has, in its final state (the table pages 50 at a time: 20 fit on one page).
        rows = {e.get_attribute("data-video-id"): e.get_attribute("data-state")
                for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="video-row"]')}
        assert len(rows) == 20 and list(rows.values()).count("failed") == 1 and rows["vid_007"] == "failed"
        # The browser reports the refused connections while the bridge was away; nothing else.
        assert console_problems(browser, allowed=("WebSocket connection to",)) == []
    finally:
        fresh(browser)
        code, _ = again.stop()
        assert code == 0, again.exit_report(40)


def test_dark_mode_and_a_phone_sized_viewport_render(browser, published):
    bridge, monitor, _ = published
    job = "job_small_" + uuid.uuid4().hex[:6]
    publish(monitor, job, a_job(job, videos=3, fail={2}))
    try:
        browser.set_window_size(375, 812)
        fresh(browser).get(bridge.http_url + "/")
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-testid="job-row"][data-job-id="{job}"]'))
        themes = []
        toggle = browser.find_element(By.CSS_SELECTOR, '[data-testid="theme-toggle"]')
        for _ in range(3):
            themes.append(browser.execute_script("return document.documentElement.dataset.theme"))
            toggle.click()
        assert {"light", "dark"} <= set(themes), themes
        for _ in range(3):
            if browser.execute_script("return document.documentElement.dataset.theme") == "dark":
                break
            toggle.click()
        assert browser.execute_script("return document.documentElement.dataset.theme") == "dark"
        background = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        channels = [int(c) for c in background[background.index("(") + 1:background.index(")")].split(",")[:3]]
        assert sum(channels) < 3 * 100, f"dark theme background is {background}"
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), "no sideways scrolling at 375 px"
        browser.save_screenshot(str(ARTIFACTS / "phone-dark-job-list.png"))
        browser.get(f"{bridge.http_url}/#/jobs/{job}")
        wait_until(browser, lambda d: attribute(d, f'[data-testid="job-view"][data-job-id="{job}"]', "data-state") == "completed")
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        browser.save_screenshot(str(ARTIFACTS / "phone-dark-job-view.png"))
        # Keyboard: the toggle and the job links take focus.
        focusable = browser.execute_script(
            "return [...document.querySelectorAll('a[href], button, input, select')].filter(e => e.tabIndex >= 0).length")
        assert focusable >= 3
        assert console_problems(browser) == []
    finally:
        browser.set_window_size(1280, 900)


def test_the_dashboards_job_control_sends_commands_and_shows_what_the_monitor_says(browser, published):
    from test_commands import CommandTopic
    from monitor import event
    bridge, monitor, _ = published
    job = "job_control_" + uuid.uuid4().hex[:6]
    publish(monitor, job, a_job(job, videos=4)[:6])
    assert wait_for(lambda: (job_state(bridge, job) or {}).get("state") == "running", timeout=20)
    topic = CommandTopic(bridge.bootstrap)
    try:
        fresh(browser).get(f"{bridge.http_url}/#/jobs/{job}")
        view = f'[data-testid="job-view"][data-job-id="{job}"]'
        wait_until(browser, lambda d: attribute(d, view, "data-state") == "running")
        pause = browser.find_element(By.CSS_SELECTOR, '[data-testid="job-pause"]')
        assert pause.get_attribute("disabled") is None and browser.find_element(By.CSS_SELECTOR, '[data-testid="job-resume"]').get_attribute("disabled")
        pause.click()
        wait_until(browser, lambda d: attribute(d, '[data-testid="command-pending"]', "data-command") == "pause",
                   message="no 'waiting for the monitor' notice")
        commands = [c for k, c in topic.read(1) if k == job]
        assert [c["type"] for c in commands] == ["job.pause"] and commands[0]["idempotency_key"]
        # The monitor acts and says so; the page follows the stream.
        publish(monitor, job, [event(job, "job.state_changed", {"from": "running", "to": "pausing"}, 900_000),
                               event(job, "job.state_changed", {"from": "pausing", "to": "paused"}, 900_001)])
        wait_until(browser, lambda d: attribute(d, view, "data-state") == "paused")
        wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-testid="command-pending"]'), message="the notice stayed")
        wait_until(browser, lambda d: d.find_element(By.CSS_SELECTOR, '[data-testid="job-resume"]').get_attribute("disabled") is None)
        assert browser.find_element(By.CSS_SELECTOR, '[data-testid="job-pause"]').get_attribute("disabled")
        browser.find_element(By.CSS_SELECTOR, '[data-testid="job-cancel"]').click()
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="confirm-cancel"]') and
                   d.find_element(By.CSS_SELECTOR, '[data-testid="confirm-cancel"]').is_displayed())
        browser.find_element(By.CSS_SELECTOR, '[data-testid="confirm-cancel"]').click()
        commands = [c for k, c in topic.read(1) if k == job]
        assert [c["type"] for c in commands] == ["job.cancel"]
        browser.save_screenshot(str(ARTIFACTS / "job-control.png"))
        # A new job from the list's form.
        browser.get(f"{bridge.http_url}/#/")
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="new-job"]'))
        browser.find_element(By.CSS_SELECTOR, '[data-testid="new-job"]').click()
        wait_until(browser, lambda d: d.find_element(By.CSS_SELECTOR, '[data-testid="new-job-title"]').is_displayed())
        browser.find_element(By.CSS_SELECTOR, '[data-testid="new-job-title"]').send_keys("Made in the browser")
        browser.find_element(By.CSS_SELECTOR, '[data-testid="new-job-sheet"]').send_keys("1A2B3C")
        browser.find_element(By.CSS_SELECTOR, '[data-testid="new-job-submit"]').click()
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="new-job-result"] a[href^="#/jobs/job_"]'),
                   message="no result with the new job's link")
        created_link = browser.find_element(By.CSS_SELECTOR, '[data-testid="new-job-result"] a[href^="#/jobs/job_"]').get_attribute("href")
        creates = [c for _, c in topic.read(1) if c["type"] == "job.create"]
        assert len(creates) == 1 and creates[0]["data"]["title"] == "Made in the browser"
        assert created_link.endswith("#/jobs/" + creates[0]["job_id"])
        assert console_problems(browser) == []
    finally:
        topic.close()
