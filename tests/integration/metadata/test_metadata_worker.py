"""The real compute worker serves the metadata service: its data plane starts the network's proxy, its
metadata agent signs as the host with the host's own credentials, and a guest gets its own metadata from
the live control plane."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from compute_tasks import rpc, signing
from compute_tasks.rpc import NetworkStateApplied
from tests.integration.compute_tasks.test_compute_worker import (  # noqa: F401 - the worker's fixtures
    broker,
    control_plane,
    host,
    log_tail,
    worker,
)
from tests.integration.dataplane.lab import Host, sh
from tests.integration.metadata.test_metadata_kernel import DHCP_IP, METADATA, RANGE, _cleanup, add_guest, make_cloud

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nftables"),
]

NS = "mdt-w1"


@pytest.fixture
def lab(tmp_path, monkeypatch, live_server):
    _cleanup()
    route = sh("ip", "route", "add", "unreachable", RANGE, check=False).returncode == 0
    sh("ip", "netns", "add", NS)
    sh("ip", "-n", NS, "link", "set", "lo", "up")
    sh("ip", "-n", NS, "link", "add", "ul0", "type", "veth", "peer", "name", "ul1")
    sh("ip", "-n", NS, "addr", "add", "10.247.0.1/24", "dev", "ul0")
    sh("ip", "-n", NS, "link", "set", "ul0", "up")
    monkeypatch.setenv("COMPUTE_DATAPLANE", "linux")
    monkeypatch.setenv("COMPUTE_NETWORK_NAMESPACE", NS)
    monkeypatch.setenv("COMPUTE_TUNNEL_ADDRESS", "10.247.0.1")
    monkeypatch.setenv("COMPUTE_METADATA_URL", live_server.url + "/internal/metadata")
    try:
        yield tmp_path
    finally:
        _cleanup()
        shutil.rmtree(f"/run/compute-dataplane/{NS}", ignore_errors=True)
        if route:
            sh("ip", "route", "del", "unreachable", RANGE, check=False)


@pytest.fixture
def plane_worker(lab, worker):  # noqa: F811
    return worker


def test_the_workers_agent_answers_a_guest_as_its_host(lab, plane_worker, host, transactional_db):  # noqa: F811
    conductor, state_dir, log_path = plane_worker
    key = signing.HostCredentials.load(state_dir / "credentials.json").keys[host]
    _none, instances, ports, plan = make_cloud(host, signing.encode_public(key))
    guest = add_guest(Host(name=host, namespace=NS, tunnel_address="10.247.0.1"), ports["a1"], "w-a1", lab)

    rpc.apply_network_state(host, plan)
    try:
        report = NetworkStateApplied.from_dict(conductor.wait_for(rpc.NETWORK_STATE_APPLIED))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{log_tail(log_path)}") from None
    assert report.error == "" and ports["a1"].port_id in report.plugged_ports, report
    assert guest.dhcp().get("ip") == "10.247.10.11"
    guest.run("ip", "route", "add", "169.254.169.254/32", "via", DHCP_IP)
    body = guest.fetch(f"{METADATA}/openstack/latest/meta_data.json")
    assert body, log_tail(log_path)
    assert json.loads(body)["uuid"] == str(instances["a1"].uuid)
