"""Fixtures of the web console tests: one stack of real services with the console (per session), one Chromium (for
test_browser.py, skipped with the reason when none is installed), one signed-in browser context per person.

Browser tests save a screenshot of each page they check in $AGENTRUN_WEB_SCREENSHOTS (`make screenshots` points it
at docs/images/), else in the session's temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.auth import ALICE
from tests.web.support import SCREENSHOTS_ENV, WebStack, find_chromium, sign_in_at, web_stack


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStack]:
    with web_stack(tmp_path_factory.mktemp("web-stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(SCREENSHOTS_ENV)
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path, description = find_chromium()
    if path is None:
        pytest.skip(description)
    return path


# Module scope (one browser per browser test module, one after the other):
# Playwright's sync API keeps its event loop marked as running in this thread while it is open, which would make
# every later asyncio.run() in the session fail.
@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


def sign_in(browser: Any, web: WebStack, token: str) -> Any:
    """A browser context signed in through the login page with `token`."""
    return sign_in_at(browser, web.url, token)


@pytest.fixture(scope="module")
def alice(browser: Any, web: WebStack) -> Iterator[Any]:
    context = sign_in(browser, web, ALICE)
    yield context
    context.close()
