"""A real cloud behind the portal for a browser: conductor, a compute host on qemu:///system, the proxy."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model

from portal.models import Membership, Role
from portal.services.images import image_create, image_upload
from tests.factories import MembershipFactory
from tests.processes import Cluster, free_port, purge_broker, wait_for_host
from tests.system.conftest import ARTIFACTS

# Playwright's sync API keeps an event loop running in this thread, so Django takes every ORM call of the
# test for one made from async code; the calls are plain synchronous ones between browser steps.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PORTAL_HOST = "portalhost"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def portal_cluster(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    """The cloud's workers around the live server; the proxy allows the portal's origin and checks sessions
    in every second, closing them when their token expires."""
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("portal-cluster"))
    cluster.proxy_port = free_port()
    cluster.proxy_origin = f"http://127.0.0.1:{cluster.proxy_port}"
    cluster.env.update(
        CONSOLEPROXY_SESSION_CHECK_INTERVAL="1",
        CONSOLEPROXY_CLOSE_ON_TOKEN_EXPIRY="1",
    )
    cluster.start_conductor()
    cluster.start_compute(PORTAL_HOST, uri="qemu:///system")
    cluster.start_consoleproxy(cluster.proxy_port, allowed_origins=f"{live_server.url},{cluster.proxy_origin}")
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


@pytest.fixture
def cloud(portal_cluster, transactional_db, settings, tiny_flavor, demo_image):
    """The portal pointed at the proxy, the demo image, and a host that has sent its heartbeat."""
    settings.CONSOLE = {**settings.CONSOLE, "PROXY_BASE_URL": f"{portal_cluster.proxy_origin}/vnc_lite.html"}
    owner = MembershipFactory(role=Role.ADMIN)
    image = image_create(
        ctx=_ctx(owner), name="demo", disk_format="qcow2", container_format="bare", visibility="public"
    )
    with demo_image.open("rb") as stream:
        image_upload(image=image, stream=stream)
    wait_for_host(PORTAL_HOST)
    portal_cluster.image = image
    portal_cluster.flavor = tiny_flavor
    return portal_cluster


def _ctx(membership):
    from portal.auth.context import RequestContext

    return RequestContext(user=membership.user, project=membership.project, role=membership.role)


@pytest.fixture
def member(transactional_db):
    return MembershipFactory(role=Role.MEMBER)


@pytest.fixture
def operator(transactional_db):
    """A cloud administrator: staff and superuser for the Django admin, admin in a project of their own."""
    user = get_user_model().objects.create_user("operator", password="secret", is_staff=True, is_superuser=True)
    membership = MembershipFactory(user=user, role=Role.ADMIN)
    assert Membership.objects.filter(user=user).count() == 1
    return membership


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, request, portal_cluster):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    messages = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"portal-failed-{request.node.name}.png"), full_page=True)
        print("===== browser console =====\n" + "\n".join(messages[-60:]))
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"portal-{name}.png"))
