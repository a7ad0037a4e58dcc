"""The viewer in a real browser: Debian's chromium, headless, driven through chromedriver.

Clicks through the main pages and checks what is rendered; screenshots go to
``test-artifacts/screenshots/`` for the record. Skipped where chromium is not
installed, unless ``CHRONICLE_REQUIRE_BROWSER`` is set (``.ci/run`` installs it and sets
that, so there a missing browser fails).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from web_helpers import HOSTILE_SID, ROOT, Viewer, build_workspace

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOTS = ROOT / "test-artifacts" / "screenshots"

if not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CHRONICLE_REQUIRE_BROWSER"):
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def viewer(ws: Path):
    v = Viewer(ws)
    yield v
    v.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM or "/usr/bin/chromium"
    # the flags that keep chromium off the network it cannot reach here, as root, without a screen
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1300,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or "/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 15):
    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def _shot(driver, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _no_console_errors(driver) -> None:
    """Nothing the page ran failed (a blocked inline script would show here as a CSP error)."""
    logs = driver.get_log("browser")
    assert [e for e in logs if e["level"] == "SEVERE"] == [], logs


def test_click_through_the_main_pages(browser, viewer: Viewer) -> None:
    b = browser
    b.get(viewer.url + "/")
    assert b.find_element(By.CSS_SELECTOR, "h1").text == "Overview"
    assert b.find_element(By.CSS_SELECTOR, "svg.chart title").get_attribute("textContent") == "events per day, by type"
    assert "llm.prompt" in b.find_element(By.CSS_SELECTOR, "main").text
    _wait(b, lambda d: "on" in d.find_element(By.ID, "live").get_attribute("class"))  # the live stream connected
    _shot(b, "overview")

    b.find_element(By.LINK_TEXT, "Sessions").click()
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == "Sessions")
    rows = b.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
    assert len(rows) == 4
    Select(b.find_element(By.NAME, "sort")).select_by_value("tokens")
    b.find_element(By.CSS_SELECTOR, "form.filters button").click()
    _wait(b, lambda d: "sort=tokens" in d.current_url)
    _shot(b, "sessions")
    b.find_element(By.LINK_TEXT, HOSTILE_SID[:8]).click()
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith("Session"))
    main = b.find_element(By.CSS_SELECTOR, "main")
    # hostile text shows as text; nothing it carried became an element or ran
    assert '<script>alert("pwned")</script>' in main.text
    assert b.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    tool = b.find_element(By.CSS_SELECTOR, "details.tool")
    assert tool.get_attribute("open") is None  # tool calls are folded
    tool.find_element(By.TAG_NAME, "summary").click()
    assert tool.get_attribute("open") == "true"
    assert "echo '<script>" in tool.text
    _shot(b, "session")

    b.find_element(By.LINK_TEXT, "Documents").click()
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == "Documents")
    Select(b.find_element(By.NAME, "stage")).select_by_value("evaluation")
    b.find_element(By.CSS_SELECTOR, "form.filters button").click()
    _wait(b, lambda d: "stage=evaluation" in d.current_url)
    stages = {td.text for td in b.find_elements(By.CSS_SELECTOR, "table.list tbody tr td:nth-child(2)")}
    assert stages == {"evaluation"}
    _shot(b, "documents")
    b.find_element(By.CSS_SELECTOR, "table.list tbody tr td a").click()
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith("evaluation"))
    lineage = b.find_elements(By.CSS_SELECTOR, "ol.lineage li")
    assert [li.text.split()[0] for li in lineage] == ["draft", "essay", "evaluation"]
    assert len(b.find_elements(By.CSS_SELECTOR, "section.texts pre.text")) == 3
    _shot(b, "document")
    evaluation_id = b.find_element(By.CSS_SELECTOR, "h1 code").text
    lineage[0].find_element(By.TAG_NAME, "a").click()  # up to the draft
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith("draft"))
    assert "evaluation" not in [li.text.split()[0] for li in b.find_elements(By.CSS_SELECTOR, "ol.lineage li")]
    below = b.find_element(By.XPATH, "//section[h2='Lineage']/table").text
    assert evaluation_id in below and "essay" in below  # the draft's essays and, through them, their evaluations

    b.find_element(By.LINK_TEXT, "Scores").click()
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == "Scores")
    cells = b.find_elements(By.CSS_SELECTOR, "svg.heatmap rect:not(.cell-empty)")
    assert len(cells) >= 2
    _shot(b, "scores")

    b.find_element(By.LINK_TEXT, "Usage").click()
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == "Usage")
    assert b.find_elements(By.CSS_SELECTOR, "svg.chart rect")
    _shot(b, "usage")

    b.find_element(By.LINK_TEXT, "Events").click()
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == "Events")
    Select(b.find_element(By.NAME, "type")).select_by_value("parse.result")
    b.find_element(By.CSS_SELECTOR, "form.filters button").click()
    _wait(b, lambda d: "type=parse.result" in d.current_url)
    types = {td.text for td in b.find_elements(By.CSS_SELECTOR, "table.list tbody tr td:nth-child(3)")}
    assert types == {"parse.result"}
    b.find_element(By.CSS_SELECTOR, "table.list tbody tr td a").click()
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith("Event"))
    assert '"type": "parse.result"' in b.find_element(By.CSS_SELECTOR, "pre.json").text
    _shot(b, "event")
    _no_console_errors(b)


def test_the_overview_updates_itself_as_events_land(browser, viewer: Viewer, ws: Path) -> None:
    b = browser
    b.get(viewer.url + "/")
    head = b.find_element(By.CSS_SELECTOR, "[data-live=head]")
    before = int(head.text.replace(",", ""))
    _wait(b, lambda d: "on" in d.find_element(By.ID, "live").get_attribute("class"))
    marker = b.execute_script("document.body.dataset.marker = 'same page'; return document.body.dataset.marker")
    note = '{"type":"annotation","stream":"doc:x","target":"doc:x","key":"k","value":"v","author":"me"}\n'
    subprocess.run([sys.executable, "-m", "chronicle", "append"], input=note.encode() * 3, check=True,
                   env={**os.environ, "CHRONICLE_ROOT": str(ws)}, capture_output=True, timeout=60)
    try:
        _wait(b, lambda d: int(d.find_element(By.CSS_SELECTOR, "[data-live=head]").text.replace(",", "")) == before + 3,
              timeout=20)
    except TimeoutException:
        raise AssertionError(f"head still shows {b.find_element(By.CSS_SELECTOR, '[data-live=head]').text}") from None
    # updated in place: the page was not reloaded
    assert b.execute_script("return document.body.dataset.marker") == marker
    time.sleep(0.5)
    _shot(b, "overview-live")
    _no_console_errors(b)
