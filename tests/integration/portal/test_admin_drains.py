"""A drain started from the admin's host list, followed on the Host drains and Migrations pages."""

from __future__ import annotations

import pytest

from compute_tasks import rpc
from portal.models import ComputeHost, HostDrain, Migration
from portal.services import live_migrations
from tests.factories import FlavorFactory, InstanceFactory, MembershipFactory
from tests.integration.scheduling.conftest import make_host
from tests.integration.test_live_migrations import progress, sent  # noqa: F401 - a fixture
from tests.integration.test_moves import report, run

pytestmark = pytest.mark.integration


def test_the_drain_action_starts_a_drain_that_the_admin_pages_follow(
    admin_client,
    sent,  # noqa: F811 - the fixture
    django_capture_on_commit_callbacks,
):
    capture = django_capture_on_commit_callbacks
    membership = MembershipFactory()
    source, _other = (make_host(name, vcpus=8, memory_mb=8192) for name in ("hv1", "hv2"))
    flavor = FlavorFactory(vcpus=1, memory_mb=512, root_gb=1)
    running = InstanceFactory(
        project=membership.project, user=membership.user, flavor=flavor, host=source, name="runner", vnc_port=5901
    )
    stopped = InstanceFactory(
        project=membership.project, user=membership.user, flavor=flavor, host=source, name="sleeper",
        vm_state="stopped", power_state=4,
    )  # fmt: skip

    with capture(execute=True):
        response = admin_client.post(
            "/admin/portal/computehost/", {"action": "drain_hosts", "_selected_action": [source.pk]}, follow=True
        )
    assert response.status_code == 200
    assert "Draining hv1." in response.content.decode()

    drain = HostDrain.objects.get(host=source)
    assert drain.status == "running"
    source.refresh_from_db()
    assert not source.enabled and str(drain.uuid) in source.disabled_reason
    items = {item.instance_id: item for item in drain.items.select_related("migration")}
    assert {items[running.pk].migration.migration_type, items[stopped.pk].migration.migration_type} == {
        "live-migration",
        "migration",
    }
    assert {item.status for item in items.values()} == {"moving"}
    assert sorted(name for name, _host, _message in sent) == ["live_migrate_server", "move_server"]

    # The live migration gets under way and reports its progress.
    live = items[running.pk].migration
    assert run(capture, live_migrations.live_migrate_server, migration_id=live.pk) == "hv2"
    report(
        capture, running, "hv2", "prepare_live_migration", migration_id=live.pk, power_state=rpc.NOSTATE,
        migrate_uri="qemu+tcp://127.0.0.22/system", vnc_host="127.0.0.1",
    )  # fmt: skip
    assert Migration.objects.get(pk=live.pk).status == "running"
    progress(live, "hv1", 40)

    # A second drain of the same host is refused with the reason.
    response = admin_client.post(
        "/admin/portal/computehost/", {"action": "drain_hosts", "_selected_action": [source.pk]}, follow=True
    )
    assert "Host hv1 is being drained already." in response.content.decode()
    assert HostDrain.objects.filter(host=source).count() == 1

    hosts_page = admin_client.get("/admin/portal/computehost/").content.decode()
    assert "running since" in hosts_page

    drains_page = admin_client.get("/admin/portal/hostdrain/").content.decode()
    assert "hv1" in drains_page and "running" in drains_page
    drain_page = admin_client.get(f"/admin/portal/hostdrain/{drain.pk}/change/").content.decode()
    for name in ("runner", "sleeper"):
        assert name in drain_page
    assert drain_page.count("moving") >= 2

    migrations_page = admin_client.get("/admin/portal/migration/").content.decode()
    assert "60%" in migrations_page
    assert "live-migration" in migrations_page or "Live migration" in migrations_page
    assert ComputeHost.objects.get(name="hv2").enabled
