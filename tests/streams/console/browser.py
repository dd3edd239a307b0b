"""A headless Debian chromium driven by selenium, for the console's browser tests.

``chromium`` and ``chromedriver`` come from Debian's packages (``make system-deps`` installs
them); under ``make test`` (``REQUIRE_SYSTEM_BINARIES=1``) a missing one fails the test. Nothing
is downloaded: the driver's path is given, so Selenium Manager never runs.

Selenium is synchronous and the worker under test runs on the test's event loop, so every
browser call runs in a thread (``asyncio.to_thread``) and the worker keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.prometheus_stack import require_binary

__all__ = ["Browser", "chromium"]

WAIT_S = 15.0

# Chromium (134 and later) can answer a command on an element found just after a navigation
# with this inspector error instead of a stale-element one: the node id was resolved against
# the document that was being replaced (SeleniumHQ/selenium#15401, teamcapybara/capybara#2800).
# It is raised while the node is resolved, before any input is dispatched, so finding the
# element again and repeating the command cannot act twice.
_REPLACED_DOCUMENT = ("does not belong to the document", "No node with given id found")


def _on_element(run: Any) -> Any:
    """Call ``run()`` (which finds its element afresh), again if the document was replaced."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    for attempt in range(20):
        try:
            return run()
        except StaleElementReferenceException:
            pass
        except WebDriverException as exc:
            if not any(text in str(exc.msg) for text in _REPLACED_DOCUMENT) or attempt == 19:
                raise
        time.sleep(0.05)
    raise AssertionError("the page kept replacing its document")


class Browser:
    """Async wrappers around a selenium Chrome driver."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def get(self, url: str) -> None:
        await asyncio.to_thread(self.driver.get, url)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    async def text(self) -> str:
        """The visible text of the page (read again if the page changed meanwhile)."""
        from selenium.common.exceptions import NoSuchElementException
        from selenium.webdriver.common.by import By

        def run() -> str:
            for _ in range(50):
                try:
                    return str(self.driver.find_element(By.TAG_NAME, "body").text)
                except NoSuchElementException:
                    time.sleep(0.05)  # between two documents (a form's POST and redirect)
            raise AssertionError(f"the page at {self.driver.current_url} kept changing")

        return str(await asyncio.to_thread(_on_element, run))

    async def source(self) -> str:
        return str(await asyncio.to_thread(lambda: self.driver.page_source))

    async def fill(self, element_id: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        def run() -> None:
            field = self.driver.find_element(By.ID, element_id)
            field.clear()
            field.send_keys(value)

        await asyncio.to_thread(_on_element, run)

    async def click(self, element_id: str) -> None:
        from selenium.webdriver.common.by import By

        await asyncio.to_thread(
            _on_element, lambda: self.driver.find_element(By.ID, element_id).click()
        )

    async def click_text(self, text: str) -> None:
        """Click the button whose label is ``text``."""
        from selenium.webdriver.common.by import By

        xpath = f"//button[normalize-space()='{text}']"
        await asyncio.to_thread(
            _on_element, lambda: self.driver.find_element(By.XPATH, xpath).click()
        )

    async def script(self, code: str) -> Any:
        return await asyncio.to_thread(self.driver.execute_script, code)

    async def cookie(self, name: str) -> dict[str, Any] | None:
        found = await asyncio.to_thread(self.driver.get_cookie, name)
        return dict(found) if found else None

    async def wait_text(self, needle: str, timeout: float = WAIT_S) -> str:
        """Wait until the page shows ``needle``; returns the page's text."""
        deadline = time.monotonic() + timeout
        while True:
            text = await self.text()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not on {self.url} in {timeout} s:\n{text[:2000]}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless chromium (fails under ``REQUIRE_SYSTEM_BINARIES=1`` when not installed)."""
    binary = require_binary("chromium")
    driver_path = require_binary("chromedriver")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    service = Service(executable_path=driver_path)
    driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=service)
    try:
        driver.set_page_load_timeout(WAIT_S)
        yield Browser(driver)
    finally:
        await asyncio.to_thread(driver.quit)
