"""Debian's Chromium for browser tests, launched the way it runs on these machines."""

import os
from contextlib import contextmanager

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextmanager
def chromium():
    """Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls: the test
    makes its rows before the browser starts and reads them after it stopped."""
    from playwright import sync_api as playwright_api

    with playwright_api.sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        try:
            yield launched
        finally:
            launched.close()


def session_cookie(user, url: str) -> list[dict]:
    """A signed-in session of ``user`` for the browser, made without the login form."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return [
        {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value, "url": url}
    ]
