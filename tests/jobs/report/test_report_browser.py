"""The HTML report in a real headless Chromium (Debian's, driven by Selenium; nothing is downloaded).

The page of the scenario's funnel is opened from a file: a screenshot is taken and checked to be a
picture, the rendered text holds the figures, a click on a stage shows its cards (a click on a
manager's cell only theirs), and the browser made no network request at all.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from jobs import report
from tests.jobs.report.scenario import Scenario

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OFFLINE_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1800")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Chromium with the performance log on, its own profile, and a driver Selenium Manager never looks for."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in OFFLINE_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def png_pixels(data: bytes, first: int | None = None) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB pixels of the ``first`` rows (all by default) of an 8-bit PNG
    (what Chromium's screenshots are); rows only depend on the rows above them."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, position = {}, 8
    idat = b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IDAT":
            idat += body
        else:
            chunks[kind] = body
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and color in (2, 6)
    size = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * size
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height if first is None else min(first, height)):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - size] if i >= size else 0
            up, corner = previous[i], previous[i - size] if i >= size else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                nearest = min((abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner))[2]
                line[i] = (line[i] + nearest) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, size)]


def requests_made(driver: Any) -> list[str]:
    """URLs of every request the page's network stack started since the last call."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_report_page_in_chromium(scenario: Scenario, browser: Any, tmp_path: Path) -> None:
    page = tmp_path / "funnel.html"
    page.write_text(report.render_html(report.funnel(scenario.engine, by="assigned", cards_per_stage=100, now=scenario.now)),
                    encoding="utf-8")
    browser.get("about:blank")
    requests_made(browser)  # drop whatever the new profile loaded before the page
    browser.get(page.as_uri())

    shot, chart = tmp_path / "funnel.png", tmp_path / "chart.png"
    assert browser.save_screenshot(str(shot))
    size = struct.unpack(">II", shot.read_bytes()[16:24])
    assert size == tuple(browser.execute_script("return [window.innerWidth, window.innerHeight]"))
    assert shot.stat().st_size > 50_000  # a white page of this size compresses to a few kilobytes
    assert browser.find_element(By.CSS_SELECTOR, "svg.funnel").screenshot(str(chart))
    width, height, pixels = png_pixels(chart.read_bytes(), first=120)  # the chart's first bars
    colours = set(pixels)
    inked = sum(1 for p in pixels if p != b"\xff\xff\xff") / len(pixels)
    assert width > 900 and len(colours) > 50 and inked > 0.05  # labels and bars: a picture, not a blank one
    assert b"\x2f\xc6\xf6" in colours  # PREPARATION's bar in its portal colour #2FC6F6

    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Deal funnel: Общая" in text
    assert 'Weakest stage: PREPAYMENT_INVOICE "Счёт на предоплату" -> EXECUTING "В работе": 50.0% lost (3 cards)' in text
    row = browser.find_element(By.CSS_SELECTOR, 'table.stages tr[data-stage="PREPAYMENT_INVOICE"]').text
    assert row == "Счёт на предоплату PREPAYMENT_INVOICE weakest 6 66.7% 75.0% 2 2 650.00 RUB; 300.00 USD 1.0 d 2.6 d"
    svg_labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "svg.funnel g.stage text.figure")]
    assert svg_labels[:6] == ["9 · 100.0%", "8 · 88.9%", "6 · 66.7%", "3 · 33.3%", "2 · 22.2%", "2 · 22.2%"]

    boxes = {b.get_attribute("data-stage"): b for b in browser.find_elements(By.CSS_SELECTOR, "div.cards")}
    assert not any(box.is_displayed() for box in boxes.values())
    browser.find_element(By.CSS_SELECTOR, 'svg.funnel g.stage[data-stage="PREPAYMENT_INVOICE"] rect.bar').click()
    shown = [stage for stage, box in boxes.items() if box.is_displayed()]
    assert shown == ["PREPAYMENT_INVOICE"]
    titles = [a.text for a in boxes["PREPAYMENT_INVOICE"].find_elements(By.CSS_SELECTOR, "tbody a")]
    assert titles == ["Сделка D9", "Сделка D3", "Сделка D1", "Сделка D2", "Сделка D7", "Сделка D4"]

    browser.find_element(By.CSS_SELECTOR, 'table.stages tr[data-stage="UC_TRIAL"]').click()
    assert [s for s, box in boxes.items() if box.is_displayed()] == ["UC_TRIAL"]
    browser.find_element(By.CSS_SELECTOR, 'table.slices td[data-stage="NEW"][data-slice="2"]').click()  # Мария's NEW
    new_box = boxes["NEW"]
    visible = [r.find_element(By.CSS_SELECTOR, "a").text for r in new_box.find_elements(By.CSS_SELECTOR, "tbody tr")
               if r.is_displayed()]
    assert sorted(visible) == ["Сделка D1", "Сделка D2", "Сделка D5"]
    assert "Only the cards of Мария Кузнецова: 3 in this list." in new_box.text

    assert browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") == []
    made = requests_made(browser)
    assert made == [page.as_uri()]  # the page itself, from the file; nothing else, no favicon
