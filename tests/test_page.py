"""serve's GET /: one self-contained page, checked as a stranger meets it: its HTML and headers
through the ASGI app, and in a real headless Chromium (Debian's, driven by selenium) against a
server process, typing a question and reading the answer and a shaded word back."""

import os
import re

import keras
import pytest
from helpers import FIXTURE_BOOLQ, free_port, start_server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from starlette.testclient import TestClient  # noqa: E402

from kboolq.data.boolq import read_rows  # noqa: E402
from kboolq.runs.api import load_run  # noqa: E402
from kboolq.serve import Answerer, Limits, app  # noqa: E402

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def test_the_page_is_one_self_contained_document(trained):
    with TestClient(app(Answerer(load_run(*trained), Limits(), threshold=0.5))) as client:
        page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    html = page.text
    assert not re.search(r"(src|href)=|https?://|//cdn", html)  # nothing fetched from elsewhere
    for element in ('id="question"', 'id="passage"', 'id="ask"', 'id="answer"',
                    'id="passage-words"'):  # fmt: skip
        assert element in html
    assert "textContent = w.word" in html  # words are inserted as text, never as markup


def browser(tmp_path):
    """Debian's headless Chromium through its chromedriver, with no network of its own."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1000,900",
                 f"--user-data-dir={tmp_path / 'chromium'}"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the page explains: torch only")
def test_a_browser_asks_a_question_and_reads_the_answer_and_shaded_words(trained, tmp_path):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)):
        pytest.skip(f"no browser: {CHROMIUM} and {DRIVER} come with Debian's chromium and "
                    "chromium-driver packages (.ci/run installs them)")  # fmt: skip
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run_dir, cache = trained
    row = read_rows(FIXTURE_BOOLQ / "validation.jsonl")[0]
    expected = float(load_run(run_dir, cache).predict([row])[0])
    port = free_port()
    server = start_server(run_dir, cache, port)
    driver = browser(tmp_path)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        driver.find_element(By.ID, "question").send_keys(row.question)
        driver.find_element(By.ID, "passage").send_keys(row.passage)
        driver.find_element(By.ID, "ask").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "answer").text)
        answer = driver.find_element(By.ID, "answer").text
        shown = driver.find_element(By.ID, "p-yes").text
        assert answer == ("yes" if expected >= 0.5 else "no")
        assert shown == f"P(yes) = {expected:.3f}"
        passage = driver.find_elements(By.CSS_SELECTOR, "#passage-words .word")
        assert passage and all(w.text for w in passage)
        words = driver.find_elements(By.CSS_SELECTOR, "#result .word")  # question and passage
        strongest = max(words, key=lambda w: abs(float(w.get_attribute("data-score"))))
        shade = strongest.value_of_css_property("background-color")  # rgba(r, g, b, 0.75)
        assert re.fullmatch(r"rgba\((0, 150, 60|200, 30, 30), 0\.75\)", shade), shade
        assert "model: run (" in driver.find_element(By.ID, "run").text
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=60)
