"""The instance list's buttons in Chromium: each row's one form posts the button pressed, a button that
asks first does nothing until confirmed, and a name is text wherever the row writes it."""

from __future__ import annotations

import pytest

from portal.models import ComputeHost, Instance
from tests.browser import chromium, session_cookie
from tests.factories import InstanceFactory

pytestmark = pytest.mark.integration

HOSTILE = """<img src=x onerror="window.hit=1">'"&"""


def test_each_row_posts_its_own_button_and_deletes_only_when_confirmed(live_server, member):
    host = ComputeHost.objects.create(name="node1", vcpus=8, memory_mb=16384, disk_gb=100)
    plain = InstanceFactory(project=member.project, user=member.user, host=host, name="web-1")
    hostile = InstanceFactory(project=member.project, user=member.user, host=host, name=HOSTILE)
    cookies = session_cookie(member.user, live_server.url)
    with chromium() as browser:
        context = browser.new_context()
        context.add_cookies(cookies)
        page = context.new_page()
        page.goto(f"{live_server.url}/instances/")
        hostile_row = page.locator(f"#instance-{hostile.uuid}")
        # The name is the link's text and part of each button's name, never markup.
        assert hostile_row.get_by_role("link", name=HOSTILE, exact=True).count() == 1
        assert hostile_row.get_by_role("button", name=f"Stop {HOSTILE}", exact=True).count() == 1
        assert page.locator("#instances img").count() == 0 and page.evaluate("window.hit") is None

        # Stop on one row: that instance, and back to the list.
        page.locator(f"#instance-{plain.uuid}").get_by_role("button", name="Stop web-1", exact=True).click()
        page.wait_for_selector(".messages")
        assert page.url == f"{live_server.url}/instances/"
        assert page.text_content(".messages").strip() == "Stop: requested for web-1."

        # Delete asks first: dismissed, nothing is sent; accepted, it is.
        asked = []

        def answer(accept: bool):
            def handle(dialog):
                asked.append(dialog.message)
                dialog.accept() if accept else dialog.dismiss()

            return handle

        delete = page.locator(f"#instance-{hostile.uuid}").get_by_role("button", name=f"Delete {HOSTILE}", exact=True)
        page.once("dialog", answer(False))
        delete.click()
        page.wait_for_timeout(500)
        assert asked == ["Delete this instance? Its disk is removed."]
        assert page.text_content(".messages").strip() == "Stop: requested for web-1."  # the same page
        page.once("dialog", answer(True))
        with page.expect_navigation():
            delete.click()
        assert page.text_content(".messages").strip() == f"Delete: requested for {HOSTILE}."
    plain.refresh_from_db()
    hostile.refresh_from_db()
    assert (plain.task_state, hostile.vm_state) == ("powering-off", "deleted")  # its host is down: at once
    assert Instance.objects.get(pk=plain.pk).actions.get().action == "stop"
