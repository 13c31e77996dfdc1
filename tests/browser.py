"""Headless Chromium from Debian (``chromium``, ``chromium-driver``) driven by Selenium through /usr/bin/chromedriver."""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

# Flags that work on the development and CI machines (no network, root, no GPU): the background
# services would otherwise try, and fail, to reach Google's hosts at every start.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic", "--window-size=1280,1000")


def chromium(profile_dir: Path, log_path: Path) -> Any:
    """A fresh headless Chromium (its own empty profile); the caller quits it."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver, "the page tests need Debian's browser: apt-get install -y --no-install-recommends chromium chromium-driver"
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never look for a browser or driver to download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver, log_output=str(log_path)), options=options)


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.1) -> Any:
    """The first truthy value of ``check()`` within ``timeout_s``; AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # an element not there yet, a page still loading
            last_error = exc
        time.sleep(poll_s)
    raise AssertionError(f"{what}: not within {timeout_s} s" + (f" (last error: {last_error})" if last_error else ""))


def web_port(log_text: str) -> int | None:
    """The port the daemon's log says the page listens on."""
    match = re.search(r"web: the operator's page is on http://\S+:(\d+)/", log_text)
    return int(match.group(1)) if match else None
