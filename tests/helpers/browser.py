"""Headless Chromium for page tests: Debian's chromium (``/usr/bin/chromium``) driven by Playwright's Python
client, never a browser download. Missing either fails the test in CI and skips it elsewhere."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

from helpers.broker import _missing

CHROMIUM = os.environ.get("ROADSIDE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextmanager
def chromium_page(width: int = 1280, height: int = 800, touch: bool = False):
    """A page of a fresh headless chromium (``touch``: a touch screen, as a tablet), and the list its uncaught
    script errors and console errors go to."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": width, "height": height}, has_touch=touch).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # console errors too, but not the browser's own line for an HTTP error status (a refused save is
            # a tested path, shown to the user by the page)
            page.on("console", lambda m: errors.append(m.text)
                    if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
            yield page, errors
        finally:
            browser.close()
