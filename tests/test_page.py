"""The attention page in a real browser: Debian's chromium, headless, driven by selenium.

Skipped, saying why, where chromium and chromedriver are not installed (`make install` installs
them with apt-get where it can). UPDATE_SCREENSHOT=1 writes the README's screenshot."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from tests.servers import RunningServer, free_port, make_config

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="browser tests need Debian's chromium and chromium-driver (make install runs apt-get install "
           "chromium chromium-driver where it is allowed)")


@pytest.fixture(scope="module")
def page():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    server = RunningServer(make_config(http_port=free_port())).start()
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1300"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, failed loads
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver, server
    finally:
        driver.quit()
        server.stop()


def _wait(driver, condition, seconds: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(lambda d: condition(d))


def _open(driver, server):
    """The page, loaded (the model's card filled in from ListModels); its text box, emptied."""
    from selenium.webdriver.common.by import By

    driver.get(server.http + "/")
    _wait(driver, lambda d: "demo-de-en" in d.find_element(By.ID, "model").text)
    box = driver.find_element(By.ID, "text")
    box.clear()
    return box


def _api(server, text: str, beam: int, n_best: int) -> dict:
    body = json.dumps({"texts": [text], "options": {"beamSize": beam, "numHypotheses": n_best,
                                                    "returnAttention": True}}).encode()
    request = urllib.request.Request(server.http + "/v1/translate", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as r:
        return json.loads(r.read())["translations"][0]


def test_typing_a_sentence_shows_translation_heatmap_and_hover(page, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver, server = page
    box = _open(driver, server)
    assert "BLEU" in driver.find_element(By.ID, "model").text  # the model's scores from ListModels
    text = "Ein Mann fährt Fahrrad. Zwei Hunde spielen im Schnee"
    box.send_keys(text)
    driver.find_element(By.ID, "go").click()
    _wait(driver, lambda d: d.find_element(By.ID, "output").text.strip())
    expected = _api(server, text, beam=5, n_best=3)
    assert driver.find_element(By.ID, "output").text == expected["hypotheses"][0]["text"]

    sections = driver.find_elements(By.CSS_SELECTOR, "section.sentence")
    assert len(sections) == len(expected["sentences"]) == 2
    for section, sentence in zip(sections, expected["sentences"]):
        best = sentence["hypotheses"][0]
        cells = section.find_elements(By.CSS_SELECTOR, "td.cell")
        assert len(cells) == len(best["attention"]) * len(sentence["sourceTokens"])  # the API's shape
        nbest = section.find_elements(By.CSS_SELECTOR, ".nbest .hyp")
        assert [b.text for b in nbest] == [h["text"] for h in sentence["hypotheses"]]
        assert all("score" in b.text for b in section.find_elements(By.CSS_SELECTOR, ".nbest button"))

    first = sections[0]
    word = first.find_elements(By.CSS_SELECTOR, ".tok.out")[1]  # "man"
    ActionChains(driver).move_to_element(word).perform()
    _wait(driver, lambda d: first.find_elements(By.CSS_SELECTOR, "tr.lit"))
    lit = [t.text for t in first.find_elements(By.CSS_SELECTOR, ".tok.src.lit")]
    assert "Mann" in lit  # "man" attended to "Mann"

    # keyboard: focusing a source word lights its column
    source_word = first.find_elements(By.CSS_SELECTOR, ".tok.src")[3]
    driver.execute_script("arguments[0].focus()", source_word)
    _wait(driver, lambda d: first.find_elements(By.CSS_SELECTOR, "td.cell.lit"))
    assert len(first.find_elements(By.CSS_SELECTOR, "td.cell.lit")) == len(expected["sentences"][0]["hypotheses"][0]["tokens"])

    # another hypothesis shows its own attention
    second = first.find_elements(By.CSS_SELECTOR, ".nbest button")[1]
    second.click()
    assert second.get_attribute("aria-pressed") == "true"
    hyp = expected["sentences"][0]["hypotheses"][1]
    assert len(first.find_elements(By.CSS_SELECTOR, "td.cell")) == len(hyp["tokens"]) * len(expected["sentences"][0]["sourceTokens"])

    # the replay emits one word per step
    first.find_element(By.CSS_SELECTOR, ".replay button").click()
    _wait(driver, lambda d: len(first.find_elements(By.CSS_SELECTOR, ".replay .out span")) >= 2, seconds=10)

    shot = ROOT / "docs" / "attention-page.png" if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    first.find_elements(By.CSS_SELECTOR, ".nbest button")[0].click()
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_a_sentence_with_nothing_to_translate_is_shown_as_kept(page):
    from selenium.webdriver.common.by import By

    driver, server = page
    _open(driver, server).send_keys("Ein Hund. ??? Eine Katze.")
    driver.find_element(By.ID, "go").click()
    _wait(driver, lambda d: d.find_element(By.ID, "output").text.strip())
    assert driver.find_element(By.ID, "output").text == _api(server, "Ein Hund. ??? Eine Katze.", 5, 3)["hypotheses"][0]["text"]
    sections = driver.find_elements(By.CSS_SELECTOR, "section.sentence")
    assert len(sections) == 3 and "kept as typed" in sections[1].text
    assert not sections[1].find_elements(By.CSS_SELECTOR, "td.cell, .replay")  # no heatmap, no replay
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_errors_are_shown_in_the_page(page):
    from selenium.webdriver.common.by import By

    driver, server = page
    box = _open(driver, server)
    driver.execute_script("arguments[0].value = arguments[1]", box, "Hund " * 80)  # over the 300-character limit
    driver.find_element(By.ID, "go").click()
    error = _wait(driver, lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error"))
    assert "exceed the maximum of 300" in error.text
    assert error.get_attribute("role") == "alert"
    assert driver.find_element(By.ID, "go").is_enabled()  # the page stays usable


def test_the_page_is_self_contained_and_fits_a_phone(page):
    html = (ROOT / "service" / "web" / "index.html").read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html  # no CDN, no external fonts
    driver, server = page
    driver.set_window_size(390, 844)
    try:
        _open(driver, server)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390  # no sideways scrolling of the page itself (the heatmap scrolls in its box)
    finally:
        driver.set_window_size(1100, 1300)
