"""The web dashboard in a real headless browser (Debian's chromium + chromedriver), against
the real broker and pipeline stages: pages render live data under the Content-Security-Policy,
a chart has points, hostile event text stays text, updates arrive without a reload, and an
Acknowledge click reaches `commands`, is carried out by the escalation stage and shows.

Screenshots go to $PRODMON_ARTIFACTS (default: test-artifacts/ under the project root).
Without chromium/chromedriver ($PRODMON_CHROMIUM, $PRODMON_CHROMEDRIVER; default Debian's
/usr/bin paths) the test fails when $CI is set and is skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.topics import ISSUES, ROLLUPS
from tests.pipeline_helpers import (
    as_batches,
    make_config,
    running_pipeline,
    send_raw,
    topic_probe,
    wait_for,
)
from tests.test_web_app import (
    by_service,
    commands,
    error_events,
    fire_alert,
    latency_events,
    now_ms,
    serving,
)

CHROMIUM = os.environ.get("PRODMON_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PRODMON_CHROMEDRIVER", "/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent


def artifacts() -> Path:
    path = Path(os.environ.get("PRODMON_ARTIFACTS", "test-artifacts"))
    path = path if path.is_absolute() else ROOT / path
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        reason = (
            f"the browser test needs {' and '.join(missing)} "
            "(Debian: apt-get install chromium chromium-driver; run.sh test installs them)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1100")
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
    """Selenium blocks: run it in a thread so the dashboard and the stages keep serving."""
    return await asyncio.to_thread(fn, *args)


def waiting(driver: Any, timeout_s: float = 30) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2, ignored_exceptions=ignored)


def kpi(driver: Any, label: str) -> str:
    from selenium.webdriver.common.by import By

    for card in driver.find_elements(By.CSS_SELECTOR, ".kpi"):
        if card.text.startswith(label):
            return card.find_element(By.TAG_NAME, "b").text
    raise AssertionError(f"no KPI {label!r}")


async def test_dashboard_in_a_headless_browser(browser, bootstrap, topics):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    shots = artifacts()
    config = make_config(bootstrap, topics)
    async with running_pipeline(config, ["ingest", "fingerprint", "windows", "escalation"]):
        end = now_ms() - 15_000
        await send_raw(config, by_service(latency_events(end)) + as_batches(error_events(end)))
        await wait_for(
            topic_probe(config, ROLLUPS),
            lambda r: any(x["resolution"] == "1m" for x in r) and len(r) > 40,
            timeout_s=40,
        )
        await wait_for(topic_probe(config, ISSUES), lambda i: len(i) > 0, timeout_s=40)
        async with serving(config) as (dash, base):
            first = await fire_alert(config, dash, "browser-first")

            # Overview: live data; the script runs under the CSP and connects to /events.
            await blocking(browser.get, f"{base}/")
            await blocking(
                waiting(browser).until,
                lambda d: d.find_element(By.ID, "live-status").text == "live",
            )
            row = browser.find_element(By.CSS_SELECTOR, 'tr[data-service="checkout"]')
            assert "%" in row.text and row.find_element(By.CSS_SELECTOR, ".badge").text
            assert kpi(browser, "Active alerts") == "1"
            await blocking(browser.save_screenshot, str(shots / "dashboard-overview.png"))

            # A change is pushed: the page updates in place (no navigation, no reload).
            browser.execute_script("window.prodmonMarker = 42;")
            await fire_alert(config, dash, "browser-second")
            await blocking(waiting(browser).until, lambda d: kpi(d, "Active alerts") == "2")
            assert browser.execute_script("return window.prodmonMarker;") == 42

            # Service page: latency charts with points, the endpoint table.
            await blocking(browser.find_element(By.LINK_TEXT, "checkout").click)
            await blocking(
                waiting(browser).until,
                lambda d: d.find_element(By.CSS_SELECTOR, '[data-resolution="10s"] svg.chart'),
            )
            chart = browser.find_element(By.CSS_SELECTOR, '[data-resolution="10s"] svg.chart')
            assert int(chart.get_attribute("data-points")) >= 30
            assert len(chart.find_elements(By.CSS_SELECTOR, "circle.pt")) >= 30
            assert chart.size["height"] > 100
            assert browser.find_element(By.LINK_TEXT, "/pay")
            await blocking(browser.save_screenshot, str(shots / "dashboard-service.png"))

            # Issues: the hostile exception message is shown as text and never runs.
            await blocking(browser.get, f"{base}/issues")
            link = browser.find_element(By.CSS_SELECTOR, "tr[data-issue] a")
            assert "<script>alert(" in link.text and "<img src=x" in link.text
            await blocking(browser.save_screenshot, str(shots / "dashboard-issues.png"))
            await blocking(link.click)
            trace = await blocking(
                waiting(browser).until, lambda d: d.find_element(By.TAG_NAME, "pre")
            )
            assert 'File "app/pay.py", line 88, in charge' in trace.text
            assert "onerror=alert(2)" in trace.text
            assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
            with pytest.raises(NoAlertPresentException):
                browser.switch_to.alert.text  # noqa: B018 (no dialog was opened)
            await blocking(browser.save_screenshot, str(shots / "dashboard-issue.png"))

            # Alerts: Acknowledge -> commands -> escalation -> acknowledged on the page.
            await blocking(browser.get, f"{base}/alerts")
            selector = f'tr[data-alert="{first}"]'
            row = browser.find_element(By.CSS_SELECTOR, selector)
            assert row.find_element(By.CSS_SELECTOR, ".status .badge").text == "firing"
            await blocking(
                row.find_element(By.CSS_SELECTOR, 'button[name="action"][value="ack"]').click
            )

            def status(d: Any) -> str:
                return d.find_element(By.CSS_SELECTOR, f"{selector} .status .badge").text

            await blocking(waiting(browser).until, lambda d: status(d) == "acknowledged")
            assert "ack sent" in browser.find_element(By.CSS_SELECTOR, ".flash").text
            await blocking(browser.save_screenshot, str(shots / "dashboard-alerts.png"))
            acks = [r.value for r in await commands(config) if r.value["command"] == "ack"]
            assert [(a["id"], a["author"]) for a in acks] == [(first, "dashboard")]
            assert dash.state.alert(first)["status"] == "acknowledged"
    for name in ("overview", "service", "issues", "issue", "alerts"):
        assert (shots / f"dashboard-{name}.png").stat().st_size > 10_000
