"""Servers on the network controller's networks: ``networks`` on create (a network, an address on it, a
port, ``auto``, ``none``), what the server shows of its ports, os-interface, and the ports' life: bound
to the server's host, following it, released with it."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.utils import timezone

from compute_tasks import rpc
from portal.models import ComputeHost, HostNetworkState, Instance, Network, Port
from portal.services import host_requests, instance_ports, lifecycle, network_sync, ports, scheduling
from portal.states import VmState
from tests.integration.network_api.helpers import network, port, subnet
from tests.integration.scheduling.conftest import at_once, make_host

from .helpers import BASE, boot, booted, v

pytestmark = pytest.mark.integration


@pytest.fixture
def net(member):
    made = network(member, name="private")
    made["subnet"] = subnet(member, made["id"], "10.20.0.0/24")
    return made


def _ports(instance: Instance) -> list[Port]:
    return list(instance_ports.instance_ports(instance))


def _placed(instance: Instance, host_name: str = "hv1", address: str = "10.251.9.1") -> Instance:
    """The instance as the conductor leaves it once it chose ``host_name``: its host set, by the one writer."""
    host, _ = ComputeHost.objects.get_or_create(
        name=host_name, defaults={"last_heartbeat": timezone.now(), "tunnel_address": address}
    )
    assert lifecycle.compare_and_swap(instance, expected_task_states=[instance.task_state], host_id=host.pk)
    return instance


def test_a_server_on_a_network_gets_a_port_with_an_address_and_shows_it(member, flavor, image, net):
    instance = booted(member, flavor, image, networks=[{"uuid": net["id"]}])
    (made,) = _ports(instance)
    assert made.device_id == str(instance.uuid) and made.device_owner.startswith("compute:")
    assert made.project_id == member.project.pk and made.auto_delete and made.host_id is None
    address = made.fixed_ips.get().ip_address
    assert address.startswith("10.20.0.") and address not in ("10.20.0.0", "10.20.0.1", "10.20.0.255")
    assert instance.networks == "ports"

    Instance.objects.filter(pk=instance.pk).update(vm_state=VmState.ACTIVE, task_state=None)
    server = member.client.get(f"{BASE}/servers/{instance.uuid}", **v("2.47")).json()["server"]
    assert server["addresses"] == {
        "private": [
            {"version": 4, "addr": address, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": made.mac_address}
        ]
    }
    # What the host is sent: a NIC on the port's tap, with the network's MTU.
    (nic,) = host_requests.build_request(instance, "req-1").nics
    assert (nic.network, nic.port_id, nic.mac, nic.ip) == ("port", str(made.pk), made.mac_address, address)
    assert nic.device == f"tap{str(made.pk)[:11]}" and nic.mtu == 1450


def test_a_chosen_address_a_taken_one_and_a_full_subnet(member, flavor, image, net):
    instance = booted(member, flavor, image, networks=[{"uuid": net["id"], "fixed_ip": "10.20.0.77"}])
    assert _ports(instance)[0].fixed_ips.get().ip_address == "10.20.0.77"

    taken = boot(member, flavor, image, networks=[{"uuid": net["id"], "fixed_ip": "10.20.0.77"}])
    assert taken.status_code == 409, taken.content
    outside = boot(member, flavor, image, networks=[{"uuid": net["id"], "fixed_ip": "192.0.2.1"}])
    assert outside.status_code == 400, outside.content
    assert Instance.objects.count() == 1 and Port.objects.filter(device_owner__startswith="compute:").count() == 1

    tiny = network(member, name="tiny")
    subnet(
        member,
        tiny["id"],
        "10.21.0.0/29",
        allocation_pools=[{"start": "10.21.0.5", "end": "10.21.0.5"}],
        enable_dhcp=False,
    )
    booted(member, flavor, image, networks=[{"uuid": tiny["id"]}])
    full = boot(member, flavor, image, networks=[{"uuid": tiny["id"]}])
    assert full.status_code == 409 and "No more IP addresses" in full.json()["conflictingRequest"]["message"]


def test_a_users_port_is_taken_and_stays_when_the_server_goes(member, flavor, image, net):
    mine = port(member, net["id"], name="mine")
    instance = booted(member, flavor, image, networks=[{"port": mine["id"]}])
    (taken,) = _ports(instance)
    assert str(taken.pk) == mine["id"] and not taken.auto_delete

    # A port in use cannot be taken again, by this project or any other.
    assert boot(member, flavor, image, networks=[{"port": mine["id"]}]).status_code == 409

    member.client.delete(f"{BASE}/servers/{instance.uuid}")  # still building: gone at once
    taken.refresh_from_db()
    assert (taken.device_id, taken.device_owner, taken.host_id) == ("", "", None)


def test_another_projects_network_and_port_are_not_found(member, stranger, flavor, image, net):
    theirs = network(stranger, name="theirs")
    subnet(stranger, theirs["id"], "10.30.0.0/24")
    their_port = port(stranger, theirs["id"])
    for networks in ([{"uuid": theirs["id"]}], [{"port": their_port["id"]}]):
        response = boot(member, flavor, image, networks=networks)
        assert response.status_code == 400, response.content
        assert "could not be found" in response.json()["badRequest"]["message"]
    assert Port.objects.get(pk=their_port["id"]).device_id == ""


def test_shared_networks_are_usable_by_everyone(member, stranger, admin, flavor, image):
    public = network(admin, name="public", shared=True)
    subnet(admin, public["id"], "10.40.0.0/24")
    instance = booted(stranger, flavor, image, networks=[{"uuid": public["id"]}])
    assert _ports(instance)[0].project_id == stranger.project.pk


@pytest.mark.parametrize(
    "networks",
    [
        [{"uuid": "not-a-uuid"}],
        [{"port": "nope"}],
        [{"uuid": "6b3e4c36-9d5d-4a8e-9d6b-2ad1c6f0a1b2", "fixed_ip": "999.1.1.1"}],
        [{}],
        ["x"],
        [{"uuid": "6b3e4c36-9d5d-4a8e-9d6b-2ad1c6f0a1b2", "colour": "red"}],
    ],
)
def test_malformed_networks_are_400(member, flavor, image, networks):
    assert boot(member, flavor, image, networks=networks).status_code == 400
    assert not Instance.objects.exists()


def test_several_servers_cannot_share_a_port_or_an_address(member, flavor, image, net):
    mine = port(member, net["id"])
    assert boot(member, flavor, image, networks=[{"port": mine["id"]}], max_count=2).status_code == 400
    fixed = [{"uuid": net["id"], "fixed_ip": "10.20.0.9"}]
    assert boot(member, flavor, image, networks=fixed, max_count=2).status_code == 400
    many = member.client.post(
        f"{BASE}/servers",
        {
            "server": {
                "name": "m",
                "imageRef": str(image.id),
                "flavorRef": "1",
                "networks": [{"uuid": net["id"]}],
                "min_count": 3,
            }
        },
        format="json",
        **v("2.47"),
    )
    assert many.status_code == 202
    addresses = [p.fixed_ips.get().ip_address for i in Instance.objects.all() for p in _ports(i)]
    assert len(addresses) == 3 == len(set(addresses))


def test_auto_makes_the_projects_network_once_and_reuses_it(member, stranger, flavor, image, settings):
    settings.CLOUD = {**settings.CLOUD, "NETWORK": {**settings.CLOUD["NETWORK"], "mode": "tenant"}}
    first = booted(member, flavor, image, networks="auto")
    second = booted(member, flavor, image, networks="auto")
    (auto,) = Network.objects.filter(project=member.project)
    assert auto.auto_allocated and auto.network_type == "vxlan" and auto.subnets.get().cidr == "10.0.0.0/24"
    assert {p.network_id for i in (first, second) for p in _ports(i)} == {auto.pk}
    # Another project gets its own.
    theirs = booted(stranger, flavor, image, networks="auto")
    assert _ports(theirs)[0].network.project_id == stranger.project.pk
    # No networks at all (before 2.37) is auto too; "none" is no port.
    body = {"server": {"name": "old-client", "imageRef": str(image.id), "flavorRef": flavor.flavorid}}
    response = member.client.post(f"{BASE}/servers", body, format="json", **v("2.36"))
    assert response.status_code == 202, response.content
    assert _ports(Instance.objects.get(uuid=response.json()["server"]["id"])) != []
    assert _ports(booted(member, flavor, image, networks="none")) == []


def test_auto_with_several_networks_asks_which(member, flavor, image, settings, net):
    settings.CLOUD = {**settings.CLOUD, "NETWORK": {**settings.CLOUD["NETWORK"], "mode": "tenant"}}
    assert _ports(booted(member, flavor, image, networks="auto"))[0].network_id == Network.objects.get().pk
    network(member, name="second")
    response = boot(member, flavor, image, networks="auto")
    assert response.status_code == 409 and "Multiple possible networks" in response.content.decode()


def test_ports_follow_the_server_to_its_host_and_hosts_get_their_plans(
    member, flavor, image, net, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(rpc, "apply_network_state", lambda host, plan: sent.append((host, plan)))
    a = _placed(booted(member, flavor, image, networks=[{"uuid": net["id"]}]), "hv1", "10.251.9.1")
    b = _placed(booted(member, flavor, image, networks=[{"uuid": net["id"]}]), "hv2", "10.251.9.2")
    pa, pb = _ports(a)[0], _ports(b)[0]
    assert (pa.host.name, pb.host.name, pa.vif_type) == ("hv1", "hv2", "bridge")

    plan = network_sync.plan_for(ComputeHost.objects.get(name="hv1"))
    (net_plan,) = plan.networks
    assert [p.port_id for p in net_plan.ports] == [str(pa.pk)]  # only its own ports are plugged there
    assert net_plan.remotes == ["10.251.9.2"]
    assert [(n.mac, n.remote) for n in net_plan.neighbours] == [(pb.mac_address, "10.251.9.2")]
    assert net_plan.dhcp_mac and net_plan.dhcp_ips and net_plan.segmentation_id
    assert {lease.mac for lease in net_plan.leases} == {pa.mac_address, pb.mac_address}

    # The host reports the port plugged: ACTIVE; a report about another host's port changes nothing.
    state = HostNetworkState.objects.get(host__name="hv1")
    network_sync.network_state_applied(
        rpc.NetworkStateApplied(host="hv1", generation=state.generation, plugged_ports=[str(pa.pk), str(pb.pk)])
    )
    pa.refresh_from_db(), pb.refresh_from_db()
    assert (pa.status, pb.status) == ("ACTIVE", "DOWN")
    assert Port.objects.get(network_id=net["id"], device_owner="network:dhcp").status == "ACTIVE"

    # The server moves to hv2: its port is bound there, and both hosts hear of it.
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        _placed(a, "hv2")
    pa.refresh_from_db()
    assert pa.host.name == "hv2" and pa.status == "DOWN"
    plans = dict(sent)
    assert set(plans) == {"hv1", "hv2"}
    assert plans["hv1"].networks == []  # nothing of the network is left on hv1
    assert {p.port_id for p in plans["hv2"].networks[0].ports} == {str(pa.pk), str(pb.pk)}
    assert plans["hv1"].generation > plan.generation  # a newer plan than the one before the move


def test_deleting_a_server_frees_its_ports(member, flavor, image, net):
    instance = _placed(booted(member, flavor, image, networks=[{"uuid": net["id"]}]), "hv1")
    made = _ports(instance)[0]
    lifecycle.mark_deleted(instance=instance, expected_task_states=[None, instance.task_state], event="test")
    assert not Port.objects.filter(pk=made.pk).exists()
    assert not Port.objects.filter(device_owner__startswith="compute:").exists()


def test_network_data_json_names_the_ports(member, flavor, image, net):
    instance = booted(member, flavor, image, networks=[{"uuid": net["id"]}], config_drive=True)
    made = _ports(instance)[0]
    data = json.loads(json.dumps(host_requests.guest_metadata(instance).network_data))
    (link,) = data["links"]
    assert link["ethernet_mac_address"] == made.mac_address and link["mtu"] == 1450
    (ipv4,) = data["networks"]
    assert ipv4["ip_address"] == made.fixed_ips.get().ip_address and ipv4["netmask"] == "255.255.255.0"
    assert ipv4["routes"][0]["gateway"] == "10.20.0.1" and ipv4["link"] == link["id"]


def test_os_interface_attach_list_detach(
    member, stranger, flavor, image, net, monkeypatch, django_capture_on_commit_callbacks
):
    calls = []
    monkeypatch.setattr(rpc, "attach_interface", lambda host, request: calls.append(("attach", host, request)))
    monkeypatch.setattr(rpc, "detach_interface", lambda host, request: calls.append(("detach", host, request)))
    instance = _placed(booted(member, flavor, image, networks=[{"uuid": net["id"]}]), "hv1")
    Instance.objects.filter(pk=instance.pk).update(vm_state=VmState.ACTIVE, task_state=None)
    url = f"{BASE}/servers/{instance.uuid}/os-interface"

    listed = member.client.get(url).json()["interfaceAttachments"]
    assert [i["port_id"] for i in listed] == [str(_ports(instance)[0].pk)]

    with django_capture_on_commit_callbacks(execute=True):
        attached = member.client.post(url, {"interfaceAttachment": {"net_id": net["id"]}}, format="json")
    assert attached.status_code == 200, attached.content
    body = attached.json()["interfaceAttachment"]
    assert body["net_id"] == net["id"] and body["port_state"] == "DOWN" and body["fixed_ips"][0]["ip_address"]
    new_port = Port.objects.get(pk=body["port_id"])
    assert new_port.host.name == "hv1" and new_port.device_id == str(instance.uuid)
    ((verb, host, request),) = calls
    assert (verb, host, request.nic.port_id, request.nic.device) == (
        "attach",
        "hv1",
        body["port_id"],
        new_port.device_name,
    )
    assert len(member.client.get(url).json()["interfaceAttachments"]) == 2
    instance.refresh_from_db()
    assert len(instance.addresses) == 2

    # Someone else's server, or a port that is not the server's, is not found.
    assert stranger.client.get(url).status_code == 404
    assert member.client.delete(f"{url}/6b3e4c36-9d5d-4a8e-9d6b-2ad1c6f0a1b2").status_code == 404
    assert member.client.post(url, {"interfaceAttachment": {"net_id": "zzz"}}, format="json").status_code == 400

    with django_capture_on_commit_callbacks(execute=True):
        assert member.client.delete(f"{url}/{new_port.pk}").status_code == 202
    assert not Port.objects.filter(pk=new_port.pk).exists()
    assert [(c[0], c[2].nic.port_id) for c in calls[1:]] == [("detach", str(new_port.pk))]
    instance.refresh_from_db()
    assert len(instance.addresses) == 1
    # A server that is busy takes no new NIC.
    Instance.objects.filter(pk=instance.pk).update(task_state="rebooting")
    busy = member.client.post(url, {"interfaceAttachment": {"net_id": net["id"]}}, format="json")
    assert busy.status_code == 409


def test_a_heartbeat_behind_its_plan_brings_the_plan_again(member, flavor, image, net, monkeypatch):
    sent = []
    monkeypatch.setattr(rpc, "apply_network_state", lambda host, plan: sent.append((host, plan)))
    _placed(booted(member, flavor, image, networks=[{"uuid": net["id"]}]), "hv1")
    host = ComputeHost.objects.get(name="hv1")
    current = HostNetworkState.objects.get(host=host).generation
    assert current >= 1

    # Its report of that plan was lost: the plan again (the host reports what it then finds).
    network_sync.host_behind(host, current)
    ((name, plan),) = sent
    assert name == "hv1" and plan.generation == current and plan.networks[0].network_id == net["id"]
    sent.clear()
    network_sync.network_state_applied(rpc.NetworkStateApplied(host="hv1", generation=current))
    network_sync.host_behind(host, current)  # up to date, and its report arrived: nothing to send
    assert sent == []
    network_sync.host_behind(host, current - 1)  # it missed a plan, or restarted with an older one
    ((name, plan),) = sent
    assert name == "hv1" and plan.generation == current
    sent.clear()
    network_sync.host_behind(host, current + 5)  # a plan from before the database started over
    ((name, plan),) = sent
    assert name == "hv1" and plan.generation == current


def test_a_report_of_a_plan_never_issued_is_not_believed_and_brings_the_current_one(
    member, flavor, image, net, monkeypatch, django_capture_on_commit_callbacks
):
    """A host that kept a plan from before the database started over reports a generation above any
    issued: taken as applied, it would make every report of the real plans look overtaken, and the
    host's ports would never become ACTIVE."""
    sent = []
    monkeypatch.setattr(rpc, "apply_network_state", lambda host, plan: sent.append((host, plan)))
    server = _placed(booted(member, flavor, image, networks=[{"uuid": net["id"]}]), "hv1")
    (port,) = _ports(server)
    current = HostNetworkState.objects.get(host__name="hv1").generation
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        network_sync.network_state_applied(
            rpc.NetworkStateApplied(host="hv1", generation=current + 40, plugged_ports=[str(port.pk)])
        )
    ((name, plan),) = sent
    assert name == "hv1" and plan.generation == current
    port.refresh_from_db()
    assert port.status == "DOWN"
    assert HostNetworkState.objects.get(host__name="hv1").applied_generation < current
    # Its report of the current plan then counts.
    network_sync.network_state_applied(
        rpc.NetworkStateApplied(host="hv1", generation=current, plugged_ports=[str(port.pk)])
    )
    port.refresh_from_db()
    assert port.status == "ACTIVE"


def test_a_user_mode_nic_shows_on_the_labelled_network(member, flavor, image, settings):
    """A host reports its user-mode NIC's address with the NIC's network ("user"): shown under the label."""
    instance = booted(member, flavor, image, networks="auto")
    assert instance.networks == "auto"  # the tests' network mode is "user"
    Instance.objects.filter(pk=instance.pk).update(
        vm_state=VmState.ACTIVE,
        task_state=None,
        addresses=[{"addr": "10.0.2.15", "version": 4, "mac": instance.mac_address, "network": "user"}],
    )
    server = member.client.get(f"{BASE}/servers/{instance.uuid}", **v("2.47")).json()["server"]
    assert list(server["addresses"]) == [settings.CLOUD["NETWORK"]["label"]]


def _report(generation: int, plugged: list[str]) -> None:
    network_sync.network_state_applied(
        rpc.NetworkStateApplied(host="hv1", generation=generation, plugged_ports=plugged)
    )


def test_a_hosts_report_and_a_change_to_its_port_at_once_both_finish(
    transactional_db, member, flavor, image, net, monkeypatch
):
    """A change to a port locks the port, then the hosts' network state (``hosts_changed``); a host's
    report at the same moment must take them in that order too, or PostgreSQL ends one of the two."""
    monkeypatch.setattr(rpc, "apply_network_state", lambda host, plan: None)
    server = _placed(booted(member, flavor, image, networks=[{"uuid": net["id"]}]), "hv1")
    (port,) = _ports(server)
    generation = HostNetworkState.objects.get(host__name="hv1").generation
    holding_port = threading.Event()
    network_changed = network_sync.network_changed

    def slow_network_changed(network_id):
        holding_port.set()
        time.sleep(0.5)  # the report starts meanwhile, with the port still locked here
        network_changed(network_id)

    monkeypatch.setattr(network_sync, "network_changed", slow_network_changed)

    def report():
        holding_port.wait(10)
        _report(generation, [str(port.pk)])

    assert at_once(lambda: ports.port_unbind(port=port), report) == []
    port.refresh_from_db()
    assert (port.host_id, port.status) == (None, "DOWN")  # the report came second: hv1 no longer has it
    assert HostNetworkState.objects.get(host__name="hv1").applied_generation == generation


def test_a_report_overtaken_while_it_wrote_its_ports_is_undone(
    transactional_db, member, flavor, image, net, monkeypatch
):
    """Two reports of one host handled at once: the older one, overtaken between its first look at the
    host's state and its lock on it, leaves nothing of what it wrote."""
    monkeypatch.setattr(rpc, "apply_network_state", lambda host, plan: None)
    server = _placed(booted(member, flavor, image, networks=[{"uuid": net["id"]}]), "hv1")
    (port,) = _ports(server)
    host = ComputeHost.objects.get(name="hv1")
    network_sync.hosts_changed([host.pk])
    older = HostNetworkState.objects.get(host=host).generation
    network_sync.hosts_changed([host.pk])
    newer = older + 1
    older_looked, newer_done = threading.Event(), threading.Event()
    ports_as_reported = network_sync._ports_as_reported

    def after_the_newer(host, report):
        if report.generation == older:
            older_looked.set()
            newer_done.wait(10)
        ports_as_reported(host, report)

    monkeypatch.setattr(network_sync, "_ports_as_reported", after_the_newer)

    def newer_report():
        older_looked.wait(10)
        try:
            _report(newer, [])
        finally:
            newer_done.set()

    assert at_once(lambda: _report(older, [str(port.pk)]), newer_report) == []
    port.refresh_from_db()
    assert port.status == "DOWN"  # as the newer report has it
    assert HostNetworkState.objects.get(host=host).applied_generation == newer


def test_a_claim_on_a_host_and_a_new_port_bound_to_it_at_once_both_finish(
    transactional_db, member, flavor, image, net, monkeypatch
):
    """A claim locks its host's row, then (its server's ports following it there) the host's network
    state. A port written onto the host locks that state, and at commit PostgreSQL checks the port's
    reference to the host with a KEY SHARE lock on the host's row: a claim's lock must not stand in its
    way, or the two deadlock and PostgreSQL ends one (an API request: a 500)."""
    monkeypatch.setattr(rpc, "apply_network_state", lambda host, plan: None)
    monkeypatch.setattr(rpc, "build_and_run_instance", lambda host, build: None)
    host = make_host("hv1")
    HostNetworkState.objects.create(host=host)
    server = booted(member, flavor, image, networks=[{"uuid": net["id"]}])
    network = Network.objects.get(pk=net["id"])
    writer_holds_state = threading.Event()
    hosts_changed = network_sync.hosts_changed

    def hosts_changed_then_wait(host_ids):
        hosts_changed(host_ids)
        if threading.current_thread().name == "writer":
            writer_holds_state.set()
            time.sleep(0.5)  # the claim locks the host's row meanwhile, then waits for the state

    monkeypatch.setattr(network_sync, "hosts_changed", hosts_changed_then_wait)

    def write_port():
        threading.current_thread().name = "writer"
        ports.port_create(project=member.project, user_is_admin=True, network=network, host=host)

    def claim():
        writer_holds_state.wait(10)
        assert scheduling.schedule_and_build(instance_uuid=str(server.uuid)) == "hv1"

    assert at_once(write_port, claim) == []
    assert Port.objects.filter(network=network, host=host).count() == 2  # the new port and the server's
