"""Drive Debian's chromium with Playwright (reusable by any browser test: ``from browser import chromium``).

Tests that use it are marked ``browser``; :func:`chromium` skips, naming what is missing, when
the ``playwright`` package or ``/usr/bin/chromium`` is not installed.  No browser is downloaded:
the machine has no network.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CORON3_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parents[1] / "artifacts"


def skip_reason() -> str | None:
    """Why a browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    if not CHROMIUM.is_file():
        return f"no chromium at {CHROMIUM} (apt-get install chromium, or set CORON3_CHROMIUM)"
    return None


@contextlib.contextmanager
def chromium(*, width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A new page (``playwright.sync_api.Page``) in a headless chromium; skips when unavailable.

    Console errors and uncaught page errors are collected in ``page.errors`` (a list of str).
    """
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.errors = []
            page.on("pageerror", lambda exc: page.errors.append(f"pageerror: {exc}"))
            page.on("console", lambda msg: page.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
            yield page
            context.close()
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as ``tests/artifacts/<name>.png``; return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
