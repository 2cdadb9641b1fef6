"""The Playwright helper skips, naming what is missing, only when the browser or the package is absent."""

from __future__ import annotations

import browser
import pytest


def test_skip_reason_names_a_missing_chromium(monkeypatch, tmp_path):
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    assert str(tmp_path / "no-chromium") in browser.skip_reason()
    with pytest.raises(pytest.skip.Exception, match="no chromium at"), browser.chromium():
        pass


def test_skip_reason_names_a_missing_playwright(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # import fails
    assert "playwright" in browser.skip_reason()


def test_no_skip_where_both_are_installed():
    pytest.importorskip("playwright.sync_api")
    if not browser.CHROMIUM.is_file():
        pytest.skip(f"{browser.CHROMIUM} not installed here")
    assert browser.skip_reason() is None
