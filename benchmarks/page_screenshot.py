"""docs/page.png: kboolq.serve's page in Debian's headless Chromium, after asking a question.

    python benchmarks/page_screenshot.py RUN_DIR [--cache-dir DIR] [--out docs/page.png]

Starts `python -m kboolq.serve RUN_DIR` on a free port, types a real BoolQ-style question and
passage, submits, waits for the shaded answer and saves a screenshot. Needs Debian's chromium
and chromium-driver packages and `pip install selenium`.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

QUESTION = "is the golden gate bridge in san francisco"
PASSAGE = (
    "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the strait "
    "connecting San Francisco Bay and the Pacific Ocean. It links the city of San Francisco "
    "to Marin County, and it was the longest suspension bridge in the world when it opened "
    "in 1937."
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/page.png"))
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "kboolq.serve", str(args.run_dir), "--port", str(port)]
    command += ["--cache-dir", str(args.cache_dir)] if args.cache_dir else []
    server = subprocess.Popen(command)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--window-size=900,820"):  # fmt: skip
        options.add_argument(flag)
    driver = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.3)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        driver.get(f"http://127.0.0.1:{port}/")
        driver.find_element(By.ID, "question").send_keys(QUESTION)
        driver.find_element(By.ID, "passage").send_keys(PASSAGE)
        driver.find_element(By.ID, "ask").click()
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "answer").text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out}: answer {driver.find_element(By.ID, 'answer').text}, "
              f"{driver.find_element(By.ID, 'p-yes').text}")  # fmt: skip
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
