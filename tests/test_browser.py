"""The viewer in a real browser: Debian's chromium, headless, driven through chromedriver.

Clicks through the main pages and checks what is rendered; screenshots go to
``test-artifacts/screenshots/`` for the record. Skipped where chromium is not
installed, unless ``CHRONICLE_REQUIRE_BROWSER`` is set (``.ci/run`` installs it and sets
that, so there a missing browser fails).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from web_helpers import HOSTILE_SID, ROOT, Viewer, append_notes

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOTS = ROOT / "test-artifacts" / "screenshots"

if not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CHRONICLE_REQUIRE_BROWSER"):
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402




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
    # a page that is being replaced (a form submitted, a link followed) leaves stale elements: look again
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
                         ).until(lambda d: condition(d))


def _open(driver, link: str, heading: str) -> None:
    """Click a link and wait for the page whose heading starts with ``heading``."""
    driver.find_element(By.LINK_TEXT, link).click()
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith(heading))


def _filter(driver, name: str, value: str) -> None:
    """Choose ``value`` in the filter form's ``name`` select, submit, and wait for the new URL."""
    Select(driver.find_element(By.NAME, name)).select_by_value(value)
    driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
    _wait(driver, lambda d: f"{name}={value}" in d.current_url)


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

    _open(b, "Sessions", "Sessions")
    rows = b.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
    assert len(rows) == 4
    _filter(b, "sort", "tokens")
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

    _open(b, "Documents", "Documents")
    _filter(b, "stage", "evaluation")
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

    _open(b, "Scores", "Scores")
    cells = b.find_elements(By.CSS_SELECTOR, "svg.heatmap rect:not(.cell-empty)")
    assert len(cells) >= 2
    _shot(b, "scores")

    _open(b, "Usage", "Usage")
    assert b.find_elements(By.CSS_SELECTOR, "svg.chart rect")
    _shot(b, "usage")

    _open(b, "Events", "Events")
    _filter(b, "type", "parse.result")
    types = {td.text for td in b.find_elements(By.CSS_SELECTOR, "table.list tbody tr td:nth-child(3)")}
    assert types == {"parse.result"}
    b.find_element(By.CSS_SELECTOR, "table.list tbody tr td a").click()
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith("Event"))
    assert '"type": "parse.result"' in b.find_element(By.CSS_SELECTOR, "pre.json").text
    _shot(b, "event")
    _no_console_errors(b)


def test_the_overview_updates_itself_as_events_land(browser, viewer: Viewer, viewer_ws: Path) -> None:
    b = browser
    b.get(viewer.url + "/")
    head = b.find_element(By.CSS_SELECTOR, "[data-live=head]")
    before = int(head.text.replace(",", ""))
    _wait(b, lambda d: "on" in d.find_element(By.ID, "live").get_attribute("class"))
    marker = b.execute_script("document.body.dataset.marker = 'same page'; return document.body.dataset.marker")
    append_notes(viewer_ws, 3)
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


def test_search_from_any_page_opens_the_hit_scrolled_to_its_message(browser, viewer: Viewer) -> None:
    b = browser
    b.get(viewer.url + "/usage")
    box = b.find_element(By.CSS_SELECTOR, "form.search-box input[name=q]")
    box.send_keys('"message number 420"\n')
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == "Search")
    hits = b.find_elements(By.CSS_SELECTOR, "ol.hits li.hit")
    assert len(hits) == 1 and b.find_element(By.CSS_SELECTOR, "ol.hits mark").text == "message number 420"
    _shot(b, "search")
    hits[0].find_element(By.TAG_NAME, "a").click()
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith("Session"))
    target = b.find_element(By.CSS_SELECTOR, "article.msg.hit")
    assert "message number 420" in target.text  # on page 3 of the session, found by its seq
    assert "page 3 of 3" in b.find_element(By.CSS_SELECTOR, "nav.pager").text
    _wait(b, lambda d: d.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.top < window.innerHeight;", target))
    _shot(b, "search-hit")
    # hostile text found by a search is shown as text, and a role filter narrows it
    b.get(viewer.url + "/search?q=pwned&role=user")
    main = b.find_element(By.CSS_SELECTOR, "main")
    assert "pwned" in main.text and b.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    assert {e.text for e in b.find_elements(By.CSS_SELECTOR, "ol.hits .role")} == {"user"}
    _no_console_errors(b)
