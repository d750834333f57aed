"""The servers resource's steps from 2.87 to 2.104, each at its microversion and just below it: rescue of
volume-backed servers (2.87), ``hostname`` (2.90, FQDN 2.94), unshelve to a host or out of a zone (2.91),
volume-backed rebuild (2.93), evacuation leaving the server stopped (2.95), ``pinned_availability_zone``
(2.96, set by update 2.104), shares (2.97), image properties (2.98), spice-direct consoles (2.99) and
scheduler hints (2.100) in the server."""

import uuid

import pytest

from compute_tasks import rpc
from portal.models import Aggregate, BlockDeviceMapping, ComputeHost, Instance, Migration
from portal.states import TaskState, VmState
from tests.factories import ImageFactory, InstanceFactory
from tests.integration.compute_api.admin_helpers import ComputeHostFactory

from .helpers import BASE, action, boot, booted, on_host, v

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("server_microversions")]


def show(caller, server, version):
    response = caller.client.get(f"{BASE}/servers/{server.uuid}", **v(version))
    assert response.status_code == 200, response.content
    return response.json()["server"]


def update(caller, server, body, version):
    return caller.client.put(f"{BASE}/servers/{server.uuid}", {"server": body}, format="json", **v(version))


@pytest.fixture
def zones(db):
    """Two zones with one host each: ``zone-a`` (host ``hv-a``) and ``zone-b`` (host ``hv-b``)."""
    for zone in ("a", "b"):
        aggregate = Aggregate.objects.create(name=f"agg-{zone}", metadata={"availability_zone": f"zone-{zone}"})
        aggregate.hosts.add(ComputeHostFactory(name=f"hv-{zone}"))
    return "zone-a", "zone-b"


# --- 2.87: rescue of a server booted from a volume --------------------------------------------------


def test_2_87_a_volume_backed_server_is_refused_as_nova_refuses_without_the_host_trait(member):
    server = InstanceFactory(project=member.project, user=member.user, image=None, image_ref=None)
    stable = ImageFactory(properties={"hw_rescue_bus": "virtio", "hw_rescue_device": "disk"})
    before = action(member, server, {"rescue": {"rescue_image_ref": str(stable.id)}}, "2.86")
    assert before.status_code == 400
    assert before.json()["badRequest"]["message"].endswith("Cannot rescue a volume-backed instance")
    at = action(member, server, {"rescue": {"rescue_image_ref": str(stable.id)}}, "2.87")
    assert at.status_code == 400
    assert at.json()["badRequest"]["message"].endswith("Host unable to rescue a volume-backed instance")
    plain = action(member, server, {"rescue": None}, "2.87")
    assert plain.json()["badRequest"]["message"].endswith("Cannot rescue a volume-backed instance")
    server.refresh_from_db()
    assert server.task_state is None


# --- 2.93: rebuild of a server booted from a volume ------------------------------------------------


def test_2_93_a_volume_backed_server_is_rebuilt_onto_its_root_volume(
    monkeypatch, member, image, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(rpc, "rebuild_instance", lambda host, request: sent.append((host, request)))
    server = on_host(InstanceFactory(project=member.project, user=member.user, image=None, image_ref=None))
    BlockDeviceMapping.objects.create(
        instance=server, volume_id="vol-root", device="/dev/vda", boot_index=0, status="attached", attachment_id="a1"
    )
    BlockDeviceMapping.objects.create(
        instance=server, volume_id="vol-data", device="/dev/vdb", status="attached", attachment_id="a2"
    )
    before = action(member, server, {"rebuild": {"imageRef": str(image.id)}}, "2.92")
    assert before.status_code == 400
    assert "boots from a volume" in before.json()["badRequest"]["message"]
    with django_capture_on_commit_callbacks(execute=True):
        response = action(member, server, {"rebuild": {"imageRef": str(image.id)}}, "2.93")
    assert response.status_code == 202, response.content
    assert response.json()["server"]["image"] == ""
    server.refresh_from_db()
    assert (server.task_state, server.image_ref) == (TaskState.REBUILDING, None)
    ((host, request),) = sent
    assert host == "hv1" and request.build.image is None
    devices = {d.volume_id: d for d in request.build.block_devices}
    assert devices["vol-root"].image.id == str(image.id) and devices["vol-root"].image.url
    assert devices["vol-data"].image is None


# --- 2.90 / 2.94: hostname ----------------------------------------------------------------------------


def test_2_90_hostname_on_create_and_for_everyone_in_the_view(member, admin, flavor, image):
    assert boot(member, flavor, image, "2.89", hostname="web-1").status_code == 400
    server = booted(member, flavor, image, version="2.90", name="My Server", hostname="web-1")
    assert server.hostname == "web-1"
    assert show(member, server, "2.90")["OS-EXT-SRV-ATTR:hostname"] == "web-1"
    assert "OS-EXT-SRV-ATTR:hostname" not in show(member, server, "2.89")
    assert show(admin, server, "2.89")["OS-EXT-SRV-ATTR:hostname"] == "web-1"
    defaulted = booted(member, flavor, image, version="2.90", name="Other Name")
    assert show(member, defaulted, "2.90")["OS-EXT-SRV-ATTR:hostname"] == "other-name"


@pytest.mark.parametrize(
    ("hostname", "at_2_90", "at_2_94"),
    [
        ("web-1", 202, 202),
        ("a", 400, 202),
        ("-web", 400, 202),
        ("web.example.com", 400, 202),
        ("under_score", 400, 202),
        ("x" * 64, 400, 202),
        ("x" * 256, 400, 400),
        ("white space", 400, 400),
        ("", 400, 400),
    ],
)
def test_2_94_hostname_rules(member, flavor, image, hostname, at_2_90, at_2_94):
    assert boot(member, flavor, image, "2.90", hostname=hostname).status_code == at_2_90
    assert boot(member, flavor, image, "2.94", hostname=hostname).status_code == at_2_94


def test_2_90_one_hostname_cannot_name_several_servers(member, flavor, image):
    response = boot(member, flavor, image, "2.90", hostname="web", max_count=2)
    assert response.status_code == 400
    assert "single hostname" in response.content.decode()
    assert not Instance.objects.filter(hostname="web").exists()


def test_2_90_hostname_on_update_and_rebuild(member, flavor, image):
    server = on_host(booted(member, flavor, image))
    assert update(member, server, {"hostname": "renamed"}, "2.89").status_code == 400
    response = update(member, server, {"hostname": "renamed"}, "2.90")
    assert response.status_code == 200, response.content
    assert response.json()["server"]["OS-EXT-SRV-ATTR:hostname"] == "renamed"
    assert update(member, server, {"hostname": "renamed.example.org"}, "2.90").status_code == 400
    assert update(member, server, {"hostname": "renamed.example.org"}, "2.94").status_code == 200
    rebuild = {"rebuild": {"imageRef": str(image.id), "hostname": "rebuilt"}}
    assert action(member, server, rebuild, "2.89").status_code == 400
    response = action(member, server, rebuild, "2.90")
    assert response.status_code == 202, response.content
    assert response.json()["server"]["OS-EXT-SRV-ATTR:hostname"] == "rebuilt"
    server.refresh_from_db()
    assert (server.hostname, server.task_state) == ("rebuilt", TaskState.REBUILDING)


# --- 2.91: unshelve to a host, unpinning the zone ----------------------------------------------------


@pytest.fixture
def offloaded(member, zones):
    return InstanceFactory(
        project=member.project,
        user=member.user,
        host=None,
        vm_state=VmState.SHELVED_OFFLOADED,
        power_state=0,
        availability_zone="zone-a",
        pinned_availability_zone="zone-a",
    )


def test_2_91_unshelve_with_a_null_zone_unpins_the_server(member, offloaded):
    assert action(member, offloaded, {"unshelve": {"availability_zone": None}}, "2.90").status_code == 400
    response = action(member, offloaded, {"unshelve": {"availability_zone": None}}, "2.91")
    assert response.status_code == 202, response.content
    offloaded.refresh_from_db()
    assert (offloaded.task_state, offloaded.pinned_availability_zone, offloaded.availability_zone) == (
        TaskState.UNSHELVING,
        None,
        "",
    )


def test_2_91_an_admin_unshelves_to_a_host(monkeypatch, admin, member, offloaded, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(rpc, "unshelve_server", sent.append)
    assert action(member, offloaded, {"unshelve": {"host": "hv-a"}}, "2.91").status_code == 403
    assert action(admin, offloaded, {"unshelve": {"host": "hv-a"}}, "2.90").status_code == 400
    unknown = action(admin, offloaded, {"unshelve": {"host": "nowhere"}}, "2.91")
    assert unknown.status_code == 400
    assert "could not be found" in unknown.json()["badRequest"]["message"]
    # The server is pinned to zone-a: a host of zone-b is a conflict, unless the same request unpins it.
    assert action(admin, offloaded, {"unshelve": {"host": "hv-b"}}, "2.91").status_code == 409
    assert action(admin, offloaded, {"unshelve": {"host": "x", "other": 1}}, "2.91").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        response = action(admin, offloaded, {"unshelve": {"availability_zone": None, "host": "hv-b"}}, "2.91")
    assert response.status_code == 202, response.content
    assert [(r.instance_uuid, r.host) for r in sent] == [(str(offloaded.uuid), "hv-b")]


def test_2_91_a_server_still_on_its_host_takes_no_zone_or_host(admin, zones):
    shelved = InstanceFactory(host=ComputeHost.objects.get(name="hv-a"), vm_state=VmState.SHELVED, power_state=4)
    assert action(admin, shelved, {"unshelve": {"availability_zone": None}}, "2.91").status_code == 409
    assert action(admin, shelved, {"unshelve": {"host": "hv-a"}}, "2.91").status_code == 409


def test_2_91_unshelve_without_a_zone_keeps_the_pin(member, offloaded):
    assert action(member, offloaded, {"unshelve": None}, "2.91").status_code == 202
    offloaded.refresh_from_db()
    assert (offloaded.pinned_availability_zone, offloaded.availability_zone) == ("zone-a", "zone-a")


# --- 2.95: an evacuated server comes back stopped ----------------------------------------------------


@pytest.mark.parametrize(("version", "power_on"), [("2.94", True), ("2.95", False)])
def test_2_95_evacuate_leaves_the_server_stopped(admin, member, flavor, image, version, power_on):
    server = on_host(booted(member, flavor, image))
    make_other = ComputeHostFactory(name="hv2")
    ComputeHost.objects.filter(name="hv1").update(forced_down=True)
    response = action(admin, server, {"evacuate": {"host": make_other.name}}, version)
    assert response.status_code == 200, response.content
    assert Migration.objects.get(instance=server, migration_type="evacuation").power_on is power_on


def test_neither_rescue_nor_evacuate_returns_a_password(admin, member, flavor, image):
    """Nothing in the guest would set one (no agent, no injection), as on create."""
    server = on_host(booted(member, flavor, image))
    rescued = action(member, server, {"rescue": {"adminPass": "chosen"}}, "2.1")
    assert (rescued.status_code, rescued.json()) == (200, {})
    other = on_host(booted(member, flavor, image))
    ComputeHostFactory(name="hv2")
    ComputeHost.objects.filter(name="hv1").update(forced_down=True)
    evacuated = action(admin, other, {"evacuate": {"host": "hv2", "onSharedStorage": False}}, "2.13")
    assert evacuated.status_code == 200, evacuated.content
    assert evacuated.content in (b"", b"null")


# --- 2.96 / 2.104: the pinned availability zone ---------------------------------------------------------


def test_2_96_the_zone_asked_for_at_boot_pins_the_server(member, flavor, image, zones):
    pinned = booted(member, flavor, image, availability_zone="zone-b")
    free = booted(member, flavor, image)
    assert show(member, pinned, "2.96")["pinned_availability_zone"] == "zone-b"
    assert show(member, free, "2.96")["pinned_availability_zone"] is None
    assert "pinned_availability_zone" not in show(member, pinned, "2.95")
    (listed,) = [
        s
        for s in member.client.get(f"{BASE}/servers/detail", **v("2.96")).json()["servers"]
        if s["id"] == str(pinned.uuid)
    ]
    assert listed["pinned_availability_zone"] == "zone-b"


def test_2_104_update_unpins_and_pins_to_the_current_zone_only(member, flavor, image, zones):
    server = on_host(booted(member, flavor, image, availability_zone="zone-a"), host_name="hv-a")
    Instance.objects.filter(pk=server.pk).update(availability_zone="zone-a")
    assert update(member, server, {"pinned_availability_zone": None}, "2.103").status_code == 400
    changed = update(member, server, {"pinned_availability_zone": "zone-b"}, "2.104")
    assert changed.status_code == 409
    assert "Unpin first" in changed.json()["conflictingRequest"]["message"]
    unpinned = update(member, server, {"pinned_availability_zone": None}, "2.104")
    assert unpinned.status_code == 200, unpinned.content
    assert unpinned.json()["server"]["pinned_availability_zone"] is None
    elsewhere = update(member, server, {"pinned_availability_zone": "zone-b"}, "2.104")
    assert elsewhere.status_code == 409
    assert "current availability zone 'zone-a'" in elsewhere.json()["conflictingRequest"]["message"]
    repinned = update(member, server, {"pinned_availability_zone": "zone-a"}, "2.104")
    assert repinned.status_code == 200
    server.refresh_from_db()
    assert server.pinned_availability_zone == "zone-a"


# --- 2.98: the image's properties -------------------------------------------------------------------


def test_2_98_the_image_shows_its_standard_properties(member, flavor):
    image = ImageFactory(
        owner=member.project,
        properties={"hw_architecture": "x86_64", "os_distro": "cirros", "architecture": "x86_64", "mine": "x"},
    )
    server = booted(member, flavor, image)
    assert "properties" not in show(member, server, "2.97")["image"]
    assert show(member, server, "2.98")["image"]["properties"] == {
        "hw_architecture": "x86_64",
        "os_distro": "cirros",
        "architecture": "x86_64",
    }
    volume_backed = InstanceFactory(project=member.project, user=member.user, image=None, image_ref=None)
    assert show(member, volume_backed, "2.98")["image"] == ""


# --- 2.100: the scheduler hints ---------------------------------------------------------------------


def test_2_100_the_server_shows_its_scheduler_hints(member, flavor, image):
    neighbour = str(uuid.uuid4())
    hinted = booted(member, flavor, image, hints={"same_host": neighbour, "custom": "x"})
    plain = booted(member, flavor, image)
    assert "scheduler_hints" not in show(member, hinted, "2.99")
    assert show(member, hinted, "2.100")["scheduler_hints"] == {"same_host": [neighbour], "custom": ["x"]}
    assert show(member, plain, "2.100")["scheduler_hints"] == {}
    response = update(member, hinted, {"name": "again"}, "2.100")
    assert response.json()["server"]["scheduler_hints"]["same_host"] == [neighbour]


# --- 2.97: shares (no host offers virtiofs) ----------------------------------------------------------


def test_2_97_shares_answer_as_nova_for_hosts_without_virtiofs(member, stranger, flavor, image):
    server = on_host(booted(member, flavor, image))
    url = f"{BASE}/servers/{server.uuid}/shares"
    share_id = str(uuid.uuid4())
    assert member.client.get(url, **v("2.96")).status_code == 404
    assert member.client.get(url, **v("2.97")).json() == {"shares": []}
    assert member.client.get(f"{url}?x=1", **v("2.97")).status_code == 400
    assert stranger.client.get(url, **v("2.97")).status_code == 404
    assert member.client.get(f"{url}/{share_id}", **v("2.97")).status_code == 404

    def attach(body, version="2.97"):
        return member.client.post(url, body, format="json", **v(version))

    assert attach({"share": {"share_id": share_id}}, "2.96").status_code == 404
    assert attach({"share": {"share_id": "nope"}}).status_code == 400
    assert attach({"share": {"share_id": share_id, "tag": "bad tag"}}).status_code == 400
    assert attach({"share": {"share_id": share_id, "other": 1}}).status_code == 400
    running = attach({"share": {"share_id": share_id, "tag": "data"}})
    assert running.status_code == 409 and "vm_state active" in running.json()["conflictingRequest"]["message"]
    Instance.objects.filter(pk=server.pk).update(vm_state=VmState.STOPPED, power_state=4)
    stopped = attach({"share": {"share_id": share_id, "tag": "data"}})
    assert stopped.status_code == 409
    assert "not configured correctly" in stopped.json()["conflictingRequest"]["message"]
    assert member.client.delete(f"{url}/{share_id}", **v("2.97")).status_code == 404


# --- 2.99: the spice-direct console -----------------------------------------------------------------


def test_2_99_spice_direct_is_unavailable_as_without_spice(member, flavor, image):
    server = on_host(booted(member, flavor, image))
    url = f"{BASE}/servers/{server.uuid}/remote-consoles"
    body = {"remote_console": {"protocol": "spice", "type": "spice-direct"}}
    before = member.client.post(url, body, format="json", **v("2.98"))
    assert before.status_code == 400 and "not allowed before 2.99" in before.json()["badRequest"]["message"]
    at = member.client.post(url, body, format="json", **v("2.99"))
    assert at.status_code == 400 and "Unavailable console type spice-direct" in at.json()["badRequest"]["message"]
