"""The browser of a browser-test module: one Chromium for all its tests, on its ``server``."""

import pytest

from tests.ui.harness import Browser, chromium


@pytest.fixture(scope="module")
def browser(server):
    driver = chromium()
    try:
        yield Browser(driver, server)
    finally:
        driver.quit()
