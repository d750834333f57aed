"""The portal and the admin in Debian's Chromium, against a real cloud with QEMU guests.

Screenshots of every step land in tests/artifacts/portal-*.png.
"""

from __future__ import annotations

import re

import libvirt
import pytest
from playwright.sync_api import expect

from portal.models import ConsoleSession, Instance, QuotaLimit
from tests.png import distinct_colours
from tests.processes import wait_until

from .conftest import PORTAL_HOST, shot

pytestmark = pytest.mark.system

BOOT_TIMEOUT_MS = 180_000
TYPED = "echo $((6*7))-marker > /dev/ttyS0"  # the guest's shell, not the keyboard, makes the 42
BANNER = b"Welcome to the cloud demo guest"


def log_in(page, base_url: str, username: str, next_path: str = "/") -> None:
    page.goto(f"{base_url}/login/?next={next_path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("secret")
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/login/"))
    # The URL changes as soon as the next page starts to arrive; its scripts (and the browser's autofocus)
    # act later and would take the keyboard from a field being filled in the meantime.
    page.wait_for_load_state("load")


def mark_page(page) -> None:
    """A value that survives only as long as the page is not reloaded."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"


def serial_log(cluster, instance: Instance) -> bytes:
    path = cluster.instance_dir(PORTAL_HOST, str(instance.uuid)) / "console.log"
    return path.read_bytes() if path.exists() else b""


def wait_for_prompt(cluster, instance: Instance, count: int = 1) -> None:
    wait_until(lambda: serial_log(cluster, instance).count(b"demo# ") >= count, 90, message="the guest's shell prompt")


def delete_everything(instances) -> None:
    from portal.auth.context import RequestContext
    from portal.models import Role
    from portal.services.instances import instance_delete

    for instance in instances:
        instance.refresh_from_db()
        if instance.vm_state != "deleted" and instance.task_state != "deleting":
            ctx = RequestContext(user=instance.user, project=instance.project, role=Role.ADMIN)
            instance_delete(ctx=ctx, instance=instance)
    for instance in instances:
        wait_until(lambda i=instance: Instance.objects.get(pk=i.pk).vm_state == "deleted", 90, message="deletion")
    conn = libvirt.open("qemu:///system")
    try:
        left = {d.UUIDString() for d in conn.listAllDomains()} & {str(i.uuid) for i in instances}
    finally:
        conn.close()
    assert not left, f"domains left behind: {left}"


# The keys a person presses on a US keyboard for the characters that need Shift. noVNC sends QEMU the
# keys' scancodes, so a "$" must arrive as Shift and 4, the way a real keyboard sends it.
_SHIFTED = {"$": "Digit4", "(": "Digit9", ")": "Digit0", "*": "Digit8", ">": "Period", "_": "Minus"}
_PLAIN = {" ": "Space", "-": "Minus", "/": "Slash", ".": "Period", "=": "Equal"}


def type_on_console(page, text: str) -> None:
    for char in text:
        if char in _SHIFTED:
            page.keyboard.press(f"Shift+{_SHIFTED[char]}")
        elif char in _PLAIN:
            page.keyboard.press(_PLAIN[char])
        elif char.isdigit():
            page.keyboard.press(f"Digit{char}")
        elif char.isupper():
            page.keyboard.press(f"Shift+Key{char}")
        else:
            page.keyboard.press(f"Key{char.upper()}")
        page.wait_for_timeout(25)
    page.keyboard.press("Enter")


def canvas_png(page) -> bytes:
    return page.locator("#screen canvas").screenshot()


def test_launch_watch_it_boot_type_into_its_console_and_stop_and_start_it(cloud, member, page, live_server):
    base = live_server.url
    log_in(page, base, member.user.username)
    shot(page, "01-dashboard")

    # Launch from the form: every field found by its label.
    page.get_by_role("link", name="Instances", exact=True).click()
    page.get_by_role("link", name="Launch instance").click()
    page.get_by_label("Name").fill("portal-vm")
    page.get_by_label("Flavor").select_option(label="m1.tiny (1 vCPU, 512 MB RAM, 1 GB disk)")
    page.get_by_label("Image").select_option(label="demo")
    page.get_by_label("Network", exact=True).select_option(label="No network")
    page.get_by_label("Count").fill("1")
    shot(page, "02-launch-form")
    page.get_by_role("button", name="Launch").click()

    instance = wait_until(lambda: Instance.objects.filter(project=member.project).first(), 10, message="the row")
    try:
        # The instance's page turns ACTIVE by itself.
        expect(page).to_have_url(re.compile(rf"/instances/{instance.uuid}/$"))
        mark_page(page)
        status = page.locator("#instance-status")
        expect(status).to_have_text("BUILD")
        shot(page, "03-building")
        expect(status).to_have_text("ACTIVE", timeout=BOOT_TIMEOUT_MS)
        assert_not_reloaded(page)
        expect(page.locator("li[data-event='api_create']")).to_be_visible()
        shot(page, "04-active")

        # The list shows it ACTIVE too, with its buttons.
        page.get_by_role("link", name="Instances", exact=True).click()
        row = page.locator(f"#instance-{instance.uuid}")
        expect(row.locator(".status")).to_have_text("ACTIVE")
        wait_for_prompt(cloud, instance)

        # The console: noVNC from the proxy, in the portal's page, filling the window.
        row.get_by_role("link", name="Console").click()
        console_status = page.locator("#console-status")
        expect(console_status).to_have_text(re.compile(r"^Connected to QEMU \(instance-"), timeout=30_000)
        canvas = page.locator("#screen canvas")
        box = canvas.bounding_box()
        assert box["width"] > 600 and box["height"] > 400  # scaled to the window, not a thumbnail
        wait_until(lambda: distinct_colours(canvas_png(page)) > 1, 30, message="the guest's screen")
        shot(page, "05-console")

        # Type into the guest: the shell on the screen computes 42 and writes it to the serial port.
        assert b"42-marker" not in serial_log(cloud, instance)
        before = canvas_png(page)
        canvas.click()
        type_on_console(page, TYPED)
        page.wait_for_timeout(1000)
        shot(page, "06-console-typed")
        wait_until(lambda: b"42-marker" in serial_log(cloud, instance), 30, message="the typed command's output")
        wait_until(lambda: canvas_png(page) != before, 10, message="the screen to change")

        # Ctrl-Alt-Del reaches the guest: its init reboots it, and it prints its banner again.
        banners = serial_log(cloud, instance).count(BANNER)
        page.get_by_role("button", name="Send Ctrl-Alt-Del").click()
        wait_until(lambda: serial_log(cloud, instance).count(BANNER) > banners, 60, message="the reboot")
        wait_for_prompt(cloud, instance, count=2)

        # The session is an object the control plane knows, recorded in the action log.
        session = ConsoleSession.objects.get(instance=instance)
        assert session.user == member.user and session.closed_at is None

        # Stop and start from the buttons; the page follows without a reload.
        page.get_by_role("link", name=re.compile("Back to portal-vm")).click()
        mark_page(page)
        expect(page.locator("li[data-event='console_open']")).to_be_visible()
        page.get_by_role("button", name="Stop").click()
        status = page.locator("#instance-status")
        mark_page(page)
        expect(status).to_have_text("SHUTOFF", timeout=90_000)
        assert_not_reloaded(page)
        expect(page.get_by_role("link", name="Console")).to_have_count(0)
        shot(page, "07-stopped")
        # The open console session ended with the VM's screen.
        wait_until(lambda: ConsoleSession.objects.get(pk=session.pk).closed_at is not None, 20, message="closed")
        page.get_by_role("button", name="Start").click()
        mark_page(page)
        expect(status).to_have_text("ACTIVE", timeout=90_000)
        assert_not_reloaded(page)
        expect(page.get_by_role("link", name="Console")).to_be_visible()
        events = page.locator("#action-log li[data-event]").evaluate_all("nodes => nodes.map(n => n.dataset.event)")
        assert "console_open" in events and "console_close" in events
        shot(page, "08-started")
    finally:
        delete_everything([instance])


def test_a_quota_error_is_shown_next_to_the_field(cloud, member, page, live_server):
    QuotaLimit.objects.create(project=member.project, resource="instances", hard_limit=1)
    log_in(page, live_server.url, member.user.username, next_path="/instances/launch/")
    page.get_by_label("Name").fill("too-many")
    page.get_by_label("Flavor").select_option(label="m1.tiny (1 vCPU, 512 MB RAM, 1 GB disk)")
    page.get_by_label("Image").select_option(label="demo")
    page.get_by_label("Count").fill("2")
    page.get_by_role("button", name="Launch").click()
    error = page.locator("#field-count .field-error")
    expect(error).to_contain_text("Quota exceeded for instances: Requested 2, but already used 0 of 1 instances")
    # The input names its error, so a screen reader reads it with the field.
    count = page.get_by_label("Count")
    assert count.get_attribute("aria-invalid") == "true"
    assert "id_count_error" in count.get_attribute("aria-describedby")
    expect(page.get_by_label("Name")).to_have_value("too-many")  # what was typed stays
    shot(page, "09-quota-error")
    assert not Instance.objects.filter(project=member.project).exists()


def test_an_expired_token_and_an_ended_session_are_explained_and_reconnect_works(
    cloud, member, operator, page, browser, live_server, settings
):
    from portal.auth.context import RequestContext
    from portal.services.instances import ServerSpec, instance_create

    ctx = RequestContext(user=member.user, project=member.project, role=member.role)
    instance = instance_create(
        ctx=ctx, spec=ServerSpec(name="console-vm", flavor=cloud.flavor, image=cloud.image, networks="none")
    )
    try:
        wait_until(lambda: Instance.objects.get(pk=instance.pk).vm_state == "active", 180, message="ACTIVE")
        wait_for_prompt(cloud, instance)
        settings.CONSOLE = {**settings.CONSOLE, "TOKEN_TTL": 6}
        log_in(page, live_server.url, member.user.username, next_path=f"/instances/{instance.uuid}/console/")
        console_status = page.locator("#console-status")
        expect(console_status).to_have_text(re.compile("^Connected to"), timeout=30_000)
        # The proxy closes the session when the token expires, and the page says so plainly.
        expect(console_status).to_have_text(re.compile("^Your console token expired at"), timeout=20_000)
        assert console_status.get_attribute("data-state") == "expired"
        shot(page, "10-console-token-expired")
        session = ConsoleSession.objects.filter(instance=instance).latest("opened_at")
        assert session.closed_reason == "the console token expired"

        # Reconnect asks for a new token; then an administrator ends the session from the admin.
        settings.CONSOLE = {**settings.CONSOLE, "TOKEN_TTL": 600}
        page.get_by_role("button", name="Reconnect").click()
        expect(console_status).to_have_text(re.compile("^Connected to"), timeout=30_000)
        admin_page = browser.new_page()
        try:
            log_in(admin_page, live_server.url, operator.user.username, next_path="/admin/portal/consolesession/")
            row = admin_page.locator("#result_list tbody tr", has_text="console-vm").filter(has_text="open")
            expect(row).to_have_count(1)
            expect(row).to_contain_text(member.user.username)
            shot(admin_page, "11-admin-console-sessions")
            row.locator("input.action-select").check()
            admin_page.get_by_label("Action:").select_option(label="End the selected console sessions")
            admin_page.get_by_role("button", name="Go").click()
            expect(admin_page.locator(".messagelist")).to_contain_text("Ending 1 session(s)")
        finally:
            admin_page.close()
        expect(console_status).to_have_text(
            "Disconnected: ended by operator. Select Reconnect to try again.", timeout=15_000
        )
        shot(page, "12-console-ended-by-admin")
        events = list(instance.actions.filter(action="console").values_list("events__event", flat=True))
        assert events.count("console_open") == 2 and "console_end_requested" in events
    finally:
        delete_everything([instance])


def test_an_operator_makes_a_flavor_and_a_zone_in_the_admin_and_boots_into_it(cloud, operator, page, live_server):
    base = live_server.url
    log_in(page, base, operator.user.username, next_path="/admin/portal/flavor/add/")

    # A flavor with extra specs, edited on the same page; a bad value is refused next to its row. The admin
    # puts the cursor in the first field: typing before it did would land there ("m1.zonedzoned").
    expect(page.get_by_label("Name:")).to_be_focused()
    page.get_by_label("Name:").fill("m1.zoned")
    page.get_by_label("ID:").fill("zoned")
    page.get_by_label("vCPUs:").fill("1")
    page.get_by_label("RAM (MB):").fill("512")
    page.get_by_label("Root disk (GB):").fill("1")
    page.get_by_label("Extra specs 1 key").fill("hw:cpu_policy")
    page.get_by_label("Extra specs 1 value").fill("sometimes")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#key-value-rows .errorlist")).to_contain_text("'sometimes' is not one of")
    shot(page, "13-admin-flavor-bad-spec")
    page.get_by_label("Extra specs 1 key").fill("aggregate_instance_extra_specs:portal")
    page.get_by_label("Extra specs 1 value").fill("yes")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    # An aggregate that makes the host a zone, with the metadata the flavor asks for.
    page.goto(f"{base}/admin/portal/aggregate/add/")
    page.get_by_label("Name:").fill("portal-rack")
    page.get_by_label("Availability zone:").fill("zone-portal")
    page.get_by_label(PORTAL_HOST).check()
    page.get_by_label("Metadata 1 key").fill("portal")
    page.get_by_label("Metadata 1 value").fill("yes")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator("#result_list")).to_contain_text("zone-portal")
    shot(page, "14-admin-aggregates")

    # Boot into that zone from the portal.
    page.goto(f"{base}/instances/launch/")
    page.get_by_label("Name").fill("zoned-vm")
    page.get_by_label("Flavor").select_option(label="m1.zoned (1 vCPU, 512 MB RAM, 1 GB disk)")
    page.get_by_label("Image").select_option(label="demo")
    page.get_by_label("Availability zone").select_option("zone-portal")
    page.get_by_label("Network", exact=True).select_option(label="No network")
    page.get_by_role("button", name="Launch").click()
    instance = wait_until(lambda: Instance.objects.filter(name="zoned-vm").first(), 10, message="the row")
    try:
        expect(page.locator("#instance-status")).to_have_text("ACTIVE", timeout=BOOT_TIMEOUT_MS)
        expect(page.locator("#instance-host")).to_have_text(PORTAL_HOST)  # admins see the host
        expect(page.locator("dl.facts")).to_contain_text("zone-portal")
        instance.refresh_from_db()
        assert instance.availability_zone == "zone-portal"
        assert instance.flavor_extra_specs == {"aggregate_instance_extra_specs:portal": "yes"}
        shot(page, "15-zoned-instance")
    finally:
        delete_everything([instance])
