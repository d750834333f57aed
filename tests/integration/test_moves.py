"""Resize, cold migration, shelve and rescue as the control plane drives them: the services and the
conductor's tasks against PostgreSQL, with the hosts' signed reports made by hand and what is sent to
hosts captured. Real hosts doing the same are in ``tests/system/test_moves_multihost.py``."""

from __future__ import annotations

import pytest

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.conductor import tasks
from portal.models import ComputeHost, Image, Instance, InstanceFault, Migration, Port, QuotaLimit
from portal.selectors.hosts import claimed_usage
from portal.selectors.quotas import instance_usage
from portal.services import (
    actions,
    host_requests,
    instance_ports,
    lifecycle,
    moves,
    networks,
    ports,
    quotas,
    reaper,
    shelving,
)
from portal.services import instances as instance_services
from portal.states import TaskState, VmState
from tests.factories import FlavorFactory, ImageFactory, InstanceFactory, MembershipFactory
from tests.integration.scheduling.conftest import make_host
from tests.processes import signed_as_host

pytestmark = pytest.mark.integration


@pytest.fixture
def sent(monkeypatch):
    """What would go to the hosts and the conductor: (sender, host or None, message)."""
    calls = []
    for name in (
        "migrate_disk",
        "finish_migration",
        "confirm_migration",
        "revert_migration",
        "finish_revert_migration",
        "shelve_instance",
        "shelve_offload_instance",
        "rescue_instance",
        "unrescue_instance",
        "build_and_run_instance",
        "start_instance",
        "terminate_instance",
    ):
        monkeypatch.setattr(rpc, name, lambda host, message, _n=name, **_options: calls.append((_n, host, message)))
    for name in ("move_server", "unshelve_server"):
        monkeypatch.setattr(rpc, name, lambda message, _n=name: calls.append((_n, None, message)))
    return calls


@pytest.fixture
def cloud(db, settings):
    # Two hosts and a server on the first; a resize goes to the other one, as a migration always does.
    settings.CLOUD = {**settings.CLOUD, "ALLOW_RESIZE_TO_SAME_HOST": False}
    membership = MembershipFactory()
    hosts = [make_host("hv1", vcpus=8, memory_mb=8192), make_host("hv2", vcpus=8, memory_mb=8192)]
    small = FlavorFactory(vcpus=1, memory_mb=512, root_gb=1)
    large = FlavorFactory(vcpus=2, memory_mb=1024, root_gb=2)
    instance = InstanceFactory(
        project=membership.project, user=membership.user, flavor=small, host=hosts[0], vnc_port=5901
    )
    ctx = RequestContext(user=membership.user, project=membership.project, role="member")
    admin = RequestContext(user=membership.user, project=membership.project, role="admin")
    return type("Cloud", (), {"ctx": ctx, "admin": admin, "instance": instance, "small": small, "large": large})


def run(django_capture_on_commit_callbacks, fn, *args, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        return fn(*args, **kwargs)


def report(capture, instance, host, action, **fields):
    """A host's signed report, through the conductor's task."""
    values = {
        "instance_uuid": str(instance.uuid),
        "host": host,
        "request_id": "req-1",
        "action": action,
        "power_state": rpc.RUNNING,
    }
    values.update(fields)
    message = rpc.ActionResult(**values).to_dict()
    name = rpc.ACTION_FAILED if values.get("error") else rpc.ACTION_DONE
    task = tasks.action_failed if values.get("error") else tasks.action_done
    with capture(execute=True):
        task(message, signed_as_host(host, name, message))
    instance.refresh_from_db()


def upload_done(migration_or_image_id):
    """What the image API does when a host's upload completes."""
    Image.objects.filter(pk=migration_or_image_id).update(status=Image.Status.ACTIVE, size=10, os_hash_value="1" * 64)


def usage(name: str) -> tuple[int, int]:
    """The vCPUs and RAM claimed on a host, as the scheduler counts them."""
    pk = ComputeHost.objects.get(name=name).pk
    used = claimed_usage([pk]).get(pk, {})
    return (used.get("vcpus") or 0, used.get("memory_mb") or 0)


def resize_to_finished(cloud, sent, capture):
    """Resize ``cloud.instance`` to the large flavor on hv2, up to VERIFY_RESIZE."""
    instance = cloud.instance
    run(capture, moves.instance_resize, ctx=cloud.ctx, instance=instance, flavor=cloud.large)
    instance.refresh_from_db()
    assert instance.task_state == TaskState.RESIZE_PREP
    migration = Migration.objects.get(instance=instance)
    assert (migration.status, migration.migration_type) == ("pre-migrating", "resize")
    assert sent.pop() == (
        "move_server",
        None,
        rpc.MoveRequest(migration_id=migration.pk, request_id=cloud.ctx.request_id),
    )

    assert run(capture, moves.move_server, migration_id=migration.pk, request_id="req-1") == "hv2"
    instance.refresh_from_db()
    migration.refresh_from_db()
    assert (instance.task_state, migration.status, migration.dest_host.name) == ("resize_migrating", "migrating", "hv2")
    # The destination holds the new flavor from now on; the source still the old one (the instance).
    assert usage("hv2") == (2, 1024) and usage("hv1") == (1, 512)
    name, host, request = sent.pop()
    assert (name, host, request.migration_id, request.image_id) == (
        "migrate_disk",
        "hv1",
        migration.pk,
        str(migration.transfer_image),
    )
    transfer = Image.objects.get(pk=migration.transfer_image)
    assert transfer.owner_id is None and transfer.visibility == "private"  # no project sees it

    upload_done(migration.transfer_image)
    report(capture, instance, "hv1", "migrate_disk", power_state=rpc.SHUTDOWN, migration_id=migration.pk)
    assert instance.task_state == TaskState.RESIZE_FINISH
    name, host, request = sent.pop()
    assert (name, host, request.build.flavor.vcpus, request.build.image.id) == (
        "finish_migration",
        "hv2",
        2,
        str(transfer.id),
    )

    report(capture, instance, "hv2", "finish_migration", migration_id=migration.pk, vnc_host="127.0.0.1", vnc_port=5902)
    migration.refresh_from_db()
    assert (instance.vm_state, instance.task_state, instance.host.name) == (VmState.RESIZED, None, "hv2")
    assert (instance.vcpus, instance.memory_mb, instance.flavor_id) == (2, 1024, cloud.large.pk)
    assert migration.status == "finished"
    # Until confirmed or reverted, the source keeps the old flavor claimed.
    assert usage("hv1") == (1, 512) and usage("hv2") == (2, 1024)
    return migration


def test_resize_confirmed_moves_the_server_and_releases_the_source_once(
    cloud, sent, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    migration = resize_to_finished(cloud, sent, capture)
    instance = cloud.instance
    run(capture, moves.instance_confirm_resize, ctx=cloud.ctx, instance=instance)
    instance.refresh_from_db()
    assert instance.task_state == TaskState.RESIZE_CONFIRMING
    assert sent.pop()[:2] == ("confirm_migration", "hv1")

    report(capture, instance, "hv1", "confirm_migration", power_state=rpc.SHUTDOWN, migration_id=migration.pk)
    migration.refresh_from_db()
    assert (instance.vm_state, instance.task_state, migration.status) == (VmState.ACTIVE, None, "confirmed")
    assert usage("hv1") == (0, 0) and usage("hv2") == (2, 1024)
    assert Image.objects.get(pk=migration.transfer_image).status == Image.Status.DELETED
    # A repeated report changes nothing.
    report(capture, instance, "hv1", "confirm_migration", migration_id=migration.pk)
    assert usage("hv1") == (0, 0) and instance.vm_state == VmState.ACTIVE
    actions = list(instance.actions.order_by("start_time").values_list("action", flat=True))
    assert actions[-2:] == ["resize", "confirmResize"]


def test_resize_reverted_brings_the_server_back_with_its_old_flavor(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    migration = resize_to_finished(cloud, sent, capture)
    instance = cloud.instance
    run(capture, moves.instance_revert_resize, ctx=cloud.ctx, instance=instance)
    assert sent.pop()[:2] == ("revert_migration", "hv2")
    report(capture, instance, "hv2", "revert_migration", power_state=rpc.NOSTATE, migration_id=migration.pk)
    name, host, request = sent.pop()
    assert (name, host, request.power_on) == ("finish_revert_migration", "hv1", True)
    report(capture, instance, "hv1", "finish_revert_migration", migration_id=migration.pk, vnc_port=5905)
    migration.refresh_from_db()
    assert (instance.vm_state, instance.host.name, instance.vcpus, instance.flavor_id) == (
        VmState.ACTIVE,
        "hv1",
        1,
        cloud.small.pk,
    )
    assert migration.status == "reverted"
    assert usage("hv2") == (0, 0) and usage("hv1") == (1, 512)


def test_a_host_speaks_only_for_its_own_part_of_a_move(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    run(capture, moves.instance_resize, ctx=cloud.ctx, instance=instance, flavor=cloud.large)
    migration = Migration.objects.get(instance=instance)
    run(capture, moves.move_server, migration_id=migration.pk)
    upload_done(Migration.objects.get(pk=migration.pk).transfer_image)
    # The destination claims the disk was sent (the source's part): nothing happens.
    report(capture, instance, "hv2", "migrate_disk", migration_id=migration.pk)
    assert instance.task_state == TaskState.RESIZE_MIGRATING
    report(capture, instance, "hv1", "migrate_disk", migration_id=migration.pk)
    assert instance.task_state == TaskState.RESIZE_FINISH
    # The source claims the guest was built on the destination: nothing happens.
    report(capture, instance, "hv1", "finish_migration", migration_id=migration.pk)
    assert (instance.task_state, instance.host.name) == (TaskState.RESIZE_FINISH, "hv1")
    # Nor from a host that has no part at all, or about another migration.
    make_host("hv3")
    report(capture, instance, "hv3", "finish_migration", migration_id=migration.pk)
    report(capture, instance, "hv2", "finish_migration", migration_id=migration.pk + 1000)
    assert (instance.task_state, instance.host.name) == (TaskState.RESIZE_FINISH, "hv1")


def test_a_destination_that_fails_gives_the_server_back_to_its_source(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    run(capture, moves.instance_resize, ctx=cloud.ctx, instance=instance, flavor=cloud.large)
    migration = Migration.objects.get(instance=instance)
    run(capture, moves.move_server, migration_id=migration.pk)
    upload_done(Migration.objects.get(pk=migration.pk).transfer_image)
    report(capture, instance, "hv1", "migrate_disk", migration_id=migration.pk)
    report(capture, instance, "hv2", "finish_migration", migration_id=migration.pk, error="disk full")
    assert instance.task_state == TaskState.RESIZE_REVERTING
    assert sent.pop()[:2] == ("finish_revert_migration", "hv1")
    report(capture, instance, "hv1", "finish_revert_migration", migration_id=migration.pk)
    assert (instance.vm_state, instance.task_state, instance.host.name, instance.vcpus) == (
        VmState.ACTIVE,
        None,
        "hv1",
        1,
    )
    assert Migration.objects.get(pk=migration.pk).status == "reverted"
    assert usage("hv2") == (0, 0)


def test_a_resize_holds_the_larger_flavor_against_the_quota(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    project = cloud.instance.project
    QuotaLimit.objects.create(project=project, resource="cores", hard_limit=2)
    huge = FlavorFactory(vcpus=3, memory_mb=512, root_gb=1)
    with pytest.raises(quotas.QuotaExceeded):
        moves.instance_resize(ctx=cloud.ctx, instance=cloud.instance, flavor=huge)
    assert not Migration.objects.exists()
    run(capture, moves.instance_resize, ctx=cloud.ctx, instance=cloud.instance, flavor=cloud.large)
    assert instance_usage(project)["cores"] == 2
    # Nothing else fits while it is held, even before the server is on its new flavor.
    with pytest.raises(quotas.QuotaExceeded):
        quotas.instance_quota_check(project=project, user=None, cores=1)


def test_resize_refusals(cloud, sent):
    with pytest.raises(instance_services.InvalidRequest, match="must change flavor"):
        moves.instance_resize(ctx=cloud.ctx, instance=cloud.instance, flavor=cloud.small)
    with pytest.raises(instance_services.InvalidRequest, match="smaller disk"):
        moves.instance_resize(
            ctx=cloud.ctx, instance=cloud.instance, flavor=FlavorFactory(vcpus=4, memory_mb=512, root_gb=0)
        )
    with pytest.raises(actions.NotAllowed):
        moves.instance_migrate(ctx=cloud.ctx, instance=cloud.instance)
    Instance.objects.filter(pk=cloud.instance.pk).update(vm_state=VmState.PAUSED)
    cloud.instance.refresh_from_db()
    with pytest.raises(lifecycle.StateConflict):
        moves.instance_resize(ctx=cloud.ctx, instance=cloud.instance, flavor=cloud.large)


def test_no_valid_host_leaves_the_server_where_it_was(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    run(capture, moves.instance_migrate, ctx=cloud.admin, instance=instance)
    migration = Migration.objects.get(instance=instance)
    ComputeHost.objects.filter(name="hv2").update(enabled=False)
    assert run(capture, moves.move_server, migration_id=migration.pk) is None
    instance.refresh_from_db()
    assert (instance.vm_state, instance.task_state, instance.host.name) == (VmState.ACTIVE, None, "hv1")
    assert Migration.objects.get(pk=migration.pk).status == "error"
    assert "No valid host" in InstanceFault.objects.filter(instance=instance).latest("id").message


def test_a_move_whose_host_never_answers_goes_back_to_its_source(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    run(capture, moves.instance_migrate, ctx=cloud.admin, instance=instance)
    migration = Migration.objects.get(instance=instance)
    run(capture, moves.move_server, migration_id=migration.pk)
    sent.clear()
    Instance.objects.filter(pk=instance.pk).update(task_deadline="2000-01-01T00:00:00Z")
    with capture(execute=True):
        reaper.reap_expired_tasks()
    instance.refresh_from_db()
    assert instance.task_state == TaskState.RESIZE_REVERTING
    assert {(name, host) for name, host, _ in sent} == {("revert_migration", "hv2"), ("finish_revert_migration", "hv1")}
    report(capture, instance, "hv1", "finish_revert_migration", migration_id=migration.pk)
    assert (instance.vm_state, instance.task_state, instance.host.name) == (VmState.ACTIVE, None, "hv1")
    assert usage("hv2") == (0, 0)


def test_shelve_offload_and_unshelve_on_another_host(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    image = run(capture, shelving.instance_shelve, ctx=cloud.ctx, instance=instance)
    name, host, request = sent.pop()
    assert (name, host, request.image_id, request.offload) == ("shelve_instance", "hv1", str(image.id), True)
    upload_done(image.id)
    report(capture, instance, "hv1", "shelve", image_id=str(image.id), offloaded=True, power_state=rpc.NOSTATE)
    assert (instance.vm_state, instance.host, instance.shelved_image) == (VmState.SHELVED_OFFLOADED, None, image.id)
    assert usage("hv1") == (0, 0)

    ComputeHost.objects.filter(name="hv1").update(enabled=False)
    run(capture, shelving.instance_unshelve, ctx=cloud.ctx, instance=instance)
    assert sent.pop()[0] == "unshelve_server"
    assert run(capture, shelving.unshelve_server, instance_uuid=str(instance.uuid)) == "hv2"
    name, host, build = sent.pop()
    assert (name, host, build.image.id) == ("build_and_run_instance", "hv2", str(image.id))
    built = rpc.InstanceBuilt(
        instance_uuid=str(instance.uuid),
        host="hv2",
        request_id="r",
        power_state=rpc.RUNNING,
        vnc_host="",
        vnc_port=5900,
    ).to_dict()
    with capture(execute=True):
        tasks.instance_built(built, signed_as_host("hv2", rpc.INSTANCE_BUILT, built))
    instance.refresh_from_db()
    assert (instance.vm_state, instance.host.name, instance.shelved_image) == (VmState.ACTIVE, "hv2", None)
    assert Image.objects.get(pk=image.id).status == Image.Status.DELETED


def test_rescue_and_unrescue(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    rescue_image = ImageFactory()
    run(capture, actions.instance_rescue, ctx=cloud.ctx, instance=instance, rescue_image=rescue_image)
    name, host, request = sent.pop()
    assert (name, host, request.rescue_image.id) == ("rescue_instance", "hv1", str(rescue_image.id))
    report(capture, instance, "hv1", "rescue", vnc_port=5909)
    assert (instance.vm_state, instance.task_state, instance.vnc_port) == (VmState.RESCUED, None, 5909)
    run(capture, actions.instance_unrescue, ctx=cloud.ctx, instance=instance)
    assert sent.pop()[:2] == ("unrescue_instance", "hv1")
    report(capture, instance, "hv1", "unrescue", vnc_port=5910)
    assert (instance.vm_state, instance.vnc_port) == (VmState.ACTIVE, 5910)


def test_deleting_a_server_mid_move_cleans_both_hosts(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    run(capture, moves.instance_migrate, ctx=cloud.admin, instance=instance)
    migration = Migration.objects.get(instance=instance)
    run(capture, moves.move_server, migration_id=migration.pk)
    sent.clear()
    run(capture, instance_services.instance_delete, ctx=cloud.ctx, instance=instance)
    assert {(name, host) for name, host, _ in sent} == {
        ("terminate_instance", "hv1"),
        ("revert_migration", "hv2"),
        ("confirm_migration", "hv1"),
    }
    assert Migration.objects.get(pk=migration.pk).status == "error"
    assert usage("hv2") == (0, 0)


@pytest.fixture
def plans(monkeypatch):
    """The data-plane plans sent to hosts: (host, plan), in order."""
    calls = []
    monkeypatch.setattr(rpc, "apply_network_state", lambda host, plan: calls.append((host, plan)))
    return calls


def _with_port(cloud) -> Port:
    """The server on a network: one port of its own, bound to its host."""
    network = networks.network_create(project=cloud.ctx.project, user_is_admin=False, name="n")
    networks.subnet_create(project=cloud.ctx.project, user_is_admin=False, network=network, cidr="10.80.0.0/24")
    port = ports.port_create(
        project=cloud.ctx.project,
        user_is_admin=False,
        network=network,
        device_id=str(cloud.instance.uuid),
        device_owner="compute:nova",
        auto_delete=True,
        host=None,
    )
    Instance.objects.filter(pk=cloud.instance.pk).update(networks="ports")
    cloud.instance.refresh_from_db()
    instance_ports.ports_follow(cloud.instance)
    port.refresh_from_db()
    assert port.host.name == "hv1"
    return port


def _planned(plans, host: str) -> set[str]:
    """The ports the newest plan sent to ``host`` has on it."""
    newest = [plan for name, plan in plans if name == host][-1]
    return {p.port_id for network in newest.networks for p in network.ports}


def test_a_servers_port_follows_it_through_a_resize(cloud, sent, plans, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    port = _with_port(cloud)
    migration = resize_to_finished(cloud, sent, capture)
    # While the move is under way both hosts have the server's network; the destination's build plugs it.
    assert str(port.pk) in _planned(plans, "hv2") and str(port.pk) in _planned(plans, "hv1")
    assert [n.port_id for n in host_requests.port_nics(cloud.instance)] == [str(port.pk)]
    port.refresh_from_db()
    assert port.host.name == "hv2"  # bound where the guest now runs

    run(capture, moves.instance_confirm_resize, ctx=cloud.ctx, instance=cloud.instance)
    report(capture, cloud.instance, "hv1", "confirm_migration", power_state=rpc.SHUTDOWN, migration_id=migration.pk)
    assert str(port.pk) not in _planned(plans, "hv1")  # the source has nothing of it left
    assert str(port.pk) in _planned(plans, "hv2")


def test_a_shelved_servers_port_waits_unbound_and_follows_it_to_its_new_host(
    cloud, sent, plans, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    port = _with_port(cloud)
    instance = cloud.instance
    image = run(capture, shelving.instance_shelve, ctx=cloud.ctx, instance=instance)
    sent.pop()
    upload_done(image.id)
    report(capture, instance, "hv1", "shelve", image_id=str(image.id), offloaded=True, power_state=rpc.NOSTATE)
    port.refresh_from_db()
    assert port.host is None and port.device_id == str(instance.uuid)  # still the server's, on no host
    assert str(port.pk) not in _planned(plans, "hv1")

    ComputeHost.objects.filter(name="hv1").update(enabled=False)
    run(capture, shelving.instance_unshelve, ctx=cloud.ctx, instance=instance)
    sent.pop()
    assert run(capture, shelving.unshelve_server, instance_uuid=str(instance.uuid)) == "hv2"
    name, host, build = sent.pop()
    assert [n.port_id for n in build.nics] == [str(port.pk)]  # the same port, the same MAC and address
    assert build.nics[0].mac == port.mac_address
    port.refresh_from_db()
    assert port.host.name == "hv2" and str(port.pk) in _planned(plans, "hv2")
