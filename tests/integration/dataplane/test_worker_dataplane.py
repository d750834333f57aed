"""The real compute worker with the Linux data plane in a namespace of its own: the signed
``compute.apply_network_state`` task programs it, the report comes back signed, the heartbeat says which
plan the host runs, and the periodic check mends what was broken behind the worker's back."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from compute_tasks import rpc
from compute_tasks.rpc import Heartbeat, NetworkStateApplied
from tests.integration.compute_tasks.test_compute_worker import log_tail
from tests.integration.dataplane.lab import Lab, LabNetwork, host_plan, new_port, sh

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nftables"),
]


@pytest.fixture
def lab(tmp_path, monkeypatch):
    lab = Lab(tmp_path)
    lab.start(2)
    # The worker started next runs its data plane in the first simulated host's namespace.
    monkeypatch.setenv("COMPUTE_DATAPLANE", "linux")
    monkeypatch.setenv("COMPUTE_NETWORK_NAMESPACE", lab.hosts[0].namespace)
    monkeypatch.setenv("COMPUTE_TUNNEL_ADDRESS", lab.hosts[0].tunnel_address)
    monkeypatch.setenv("COMPUTE_NETWORK_CHECK_INTERVAL", "0.5")
    yield lab
    for name in sh("ip", "netns", "list").stdout.split("\n"):
        name = name.split(" ")[0]
        if name.startswith(f"{lab.hosts[0].namespace}-qdhcp-"):
            pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                os.kill(int(pid), 15)
    lab.stop()
    shutil.rmtree(f"/run/compute-dataplane/{lab.hosts[0].namespace}", ignore_errors=True)


@pytest.fixture
def plane_worker(lab, worker):
    return worker


def test_the_worker_applies_its_plan_reports_it_and_mends_drift(lab, plane_worker, host):
    conductor, _state_dir, log_path = plane_worker
    h1, h2 = lab.hosts
    h1.name = host  # the worker's host name
    net = LabNetwork(
        network_id=str(uuid.uuid4()),
        vni=3001,
        cidr="10.251.30.0/24",
        gateway="10.251.30.1",
        dhcp_mac="fa:16:3e:cc:00:01",
        dhcp_ip="10.251.30.2",
    )
    mine, theirs = new_port(1, "10.251.30.11"), new_port(2, "10.251.30.12")
    net.bindings = [(h1, mine), (h2, theirs)]
    guest = lab.add_guest(h1, mine, "w1")

    # A plan addressed to another host, even on this host's queue, is refused.
    other = host_plan(h1, [net], 9)
    rpc.apply_network_state(host, type(other)(host="someone-else", generation=9, networks=other.networks))

    rpc.apply_network_state(host, host_plan(h1, [net], 7))
    try:
        body = conductor.wait_for(rpc.NETWORK_STATE_APPLIED)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{log_tail(log_path)}") from None
    report = NetworkStateApplied.from_dict(body)
    assert (report.generation, report.plugged_ports, report.error, report.drift) == (7, [mine.port_id], "", [])
    assert guest.dhcp()["ip"] == "10.251.30.11"

    beat = Heartbeat.from_dict(conductor.wait_for(rpc.HEARTBEAT, lambda b: b.get("network_generation") == 7))
    assert beat.tunnel_address == h1.tunnel_address

    bridge = f"brq{net.network_id[:11]}"
    sh("ip", "-n", h1.namespace, "link", "del", bridge)
    # The check that mends it may run while the bridge is still going: then the next one does it.
    mended = NetworkStateApplied.from_dict(
        conductor.wait_for(
            rpc.NETWORK_STATE_APPLIED, lambda b: any(f"bridge {bridge} of network" in line for line in b["drift"])
        )
    )
    assert mended.generation == 7 and mended.error == "", mended
    assert mended.plugged_ports == [mine.port_id]
    assert all(body["generation"] != 9 for name, body in conductor.received if name == rpc.NETWORK_STATE_APPLIED)
