"""The portal's image upload in Chromium: the file goes up with a progress bar, and the result follows."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.models import Image
from tests.browser import chromium, session_cookie

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("image_dir")]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SIZE = 6 * 1024 * 1024


def test_an_upload_shows_its_progress_then_the_result(live_server, member):
    cookies = session_cookie(member.user, live_server.url)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1000, "height": 700})
        context.add_cookies(cookies)
        page = context.new_page()
        page.goto(f"{live_server.url}/images/upload/")
        # Every value the bar takes, as the page's own progress events set it.
        page.evaluate(
            """() => {
                window.barValues = [];
                const bar = document.getElementById("upload-bar");
                const set = Object.getOwnPropertyDescriptor(HTMLProgressElement.prototype, "value").set;
                Object.defineProperty(bar, "value", {
                    set(v) { window.barValues.push(v); set.call(bar, v); },
                    get() { return Number(bar.getAttribute("value")); },
                });
            }"""
        )
        page.fill("#id_name", "progress-disk")
        page.select_option("#id_disk_format", "raw")
        page.set_input_files(
            "#id_file", files=[{"name": "disk.raw", "mimeType": "application/octet-stream", "buffer": b"\0" * SIZE}]
        )
        page.click("main form button[type=submit]")

        page.wait_for_selector("#upload-result .messages", timeout=30_000)
        assert page.is_hidden("#image-upload") and page.is_visible("#upload-progress")
        assert page.text_content("#upload-percent") == "100 %"
        assert page.text_content("#upload-bytes") == "(6.0 MiB of 6.0 MiB)"
        values = page.evaluate("window.barValues")
        assert values[0] == 0 and values[-1] == 100 and values == sorted(values), values
        assert "Image progress-disk uploaded (6291456 bytes)." in page.text_content("#upload-result")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "portal-image-upload-progress.png"))

        # A refusal shows the form again as the server answered it, its error at the field.
        page.goto(f"{live_server.url}/images/upload/")
        page.fill("#id_name", "not-qcow2")
        page.set_input_files(
            "#id_file", files=[{"name": "disk.img", "mimeType": "application/octet-stream", "buffer": b"\0" * 4096}]
        )
        page.click("main form button[type=submit]")
        page.wait_for_selector("#image-upload .field-error", timeout=30_000)
        assert "not in qcow2 format" in page.text_content("#image-upload")
    assert Image.objects.get(name="progress-disk").size == SIZE
    assert not Image.objects.filter(name="not-qcow2").exclude(status=Image.Status.DELETED).exists()


def test_without_javascript_the_form_still_posts(live_server, member):
    cookies = session_cookie(member.user, live_server.url)
    with chromium() as browser:
        context = browser.new_context(java_script_enabled=False)
        context.add_cookies(cookies)
        page = context.new_page()
        page.goto(f"{live_server.url}/images/upload/")
        page.fill("#id_name", "plain-disk")
        page.select_option("#id_disk_format", "raw")
        page.set_input_files(
            "#id_file", files=[{"name": "disk.raw", "mimeType": "application/octet-stream", "buffer": b"\0" * 4096}]
        )
        page.click("main form button[type=submit]")
        page.wait_for_url(f"{live_server.url}/images/")
        assert "Image plain-disk uploaded (4096 bytes)." in page.text_content(".messages")
    assert Image.objects.filter(name="plain-disk").exists()
