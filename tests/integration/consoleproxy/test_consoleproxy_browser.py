"""noVNC's vnc_lite.html, served by the proxy, showing QEMU's screen in headless Debian Chromium."""

from __future__ import annotations

import time

import pytest
from consoleproxy_services import QEMU_NAME, REPO_ROOT

from tests.browser import launch_chromium
from tests.png import distinct_colours

pytestmark = pytest.mark.system

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
STATUS_CONNECTED = "document.getElementById('status').textContent.startsWith('Connected')"


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api as playwright_api

    with playwright_api.sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


def console_url(host: str, port: int, token: str) -> str:
    return f"http://{host}:{port}/vnc_lite.html?path=%3Ftoken%3D{token}"


def test_the_console_page_shows_the_vm_screen(browser, proxy, consoleauth, qemu_vnc, novnc_dir):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    try:
        page.goto(console_url("127.0.0.1", proxy.port, token))
        page.wait_for_function(STATUS_CONNECTED, timeout=20_000)
        assert page.text_content("#status") == f"Connected to QEMU ({QEMU_NAME})"
        canvas = page.locator("#screen canvas")
        deadline = time.monotonic() + 20
        while True:
            screenshot = canvas.screenshot()
            colours = distinct_colours(screenshot)
            if colours > 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        page.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "consoleproxy-novnc.png").write_bytes(screenshot)
    assert colours > 1, "the console canvas stayed a single colour"
    assert token not in proxy.log()


def test_a_page_from_an_origin_outside_the_allowlist_cannot_connect(browser, proxy, consoleauth, qemu_vnc, novnc_dir):
    # The same files from http://localhost:<port>: a different origin, absent from the allowlist.
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    page = browser.new_page()
    try:
        page.goto(console_url("localhost", proxy.port, token))
        page.wait_for_function(
            "['Disconnected', 'Something went wrong'].some("
            "t => document.getElementById('status').textContent.startsWith(t))",
            timeout=20_000,
        )
        status = page.text_content("#status")
    finally:
        page.close()
    assert not status.startswith("Connected")
    proxy.wait_for_log(f"refused console websocket: Origin http://localhost:{proxy.port} is not in")
    assert token not in consoleauth.tokens_asked()
