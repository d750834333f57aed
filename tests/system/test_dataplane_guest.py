"""A real QEMU guest on a cloud network: libvirt makes its tap (``type='ethernet'``) in the root
namespace, the host's data plane moves it into the host's namespace and plugs it into the network's
bridge; the guest's own ``udhcpc`` gets its static lease from the host's dnsmasq, and a guest on another
host reaches it across the VXLAN overlay. A port deleted while the guest runs cuts it off."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from compute_tasks import rpc
from compute_tasks.config import HostConfig
from compute_tasks.dataplane.linux import LinuxDataplane
from compute_tasks.drivers.libvirt_driver import LibvirtDriver
from compute_tasks.manager import ComputeManager
from compute_tasks.rpc import BuildRequest, FlavorSpec, InstanceRef, NetworkStateApplied, NicSpec
from tests.integration.dataplane.lab import Lab, LabNetwork, host_plan, new_port, sh, wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nftables"),
]


class Reports:
    def __init__(self):
        self.sent = []

    def instance_built(self, result):
        self.sent.append(result)

    def build_failed(self, result):
        self.sent.append(result)

    def action_done(self, result):
        self.sent.append(result)

    def network_state_applied(self, result):
        self.sent.append(result)

    def network(self):
        return [m for m in self.sent if isinstance(m, NetworkStateApplied)]


class Images:
    def __init__(self, path):
        self.path = path

    def fetch(self, image):
        return self.path


def test_a_qemu_guest_on_a_vxlan_network_gets_its_lease_and_is_reached_from_another_host(tmp_path, demo_image):
    lab = Lab(tmp_path)
    driver = plane = request = None
    try:
        lab.start(2)
        h1, h2 = lab.hosts
        net = LabNetwork(
            network_id=str(uuid.uuid4()),
            vni=4001,
            cidr="10.251.40.0/24",
            gateway=None,
            dhcp_mac="fa:16:3e:dd:00:01",
            dhcp_ip="10.251.40.2",
        )
        vm_port, peer_port = new_port(1, "10.251.40.11", hostname="vm"), new_port(2, "10.251.40.12")
        request = BuildRequest(
            instance_uuid=vm_port.instance_uuid,
            domain_name=f"test-dataplane-{uuid.uuid4().hex[:8]}",
            flavor=FlavorSpec(name="tiny", vcpus=1, memory_mb=256, root_gb=1),
            image=rpc.ImageSpec(id="demo", url="http://unused.invalid/", sha256="0" * 64, size=1),
            nics=[NicSpec(mac=vm_port.mac, network="port", port_id=vm_port.port_id, device=vm_port.device, mtu=1450)],
        )
        net.bindings = [(h1, vm_port), (h2, peer_port)]
        peer = lab.add_guest(h2, peer_port, "peer")
        config = HostConfig.from_env(
            {"COMPUTE_HOST": h1.name, "COMPUTE_STATE_DIR": str(tmp_path / "state"), "COMPUTE_DATAPLANE": "none"}
        )
        driver = LibvirtDriver(
            uri="qemu:///system",
            virt_type="qemu",
            instances_dir=config.instances_dir,
            vnc_listen="127.0.0.1",
            vnc_host="127.0.0.1",
            shutdown_timeout=5,
        )
        plane = LinuxDataplane(h1.name, tmp_path / "state", tunnel_address=h1.tunnel_address, namespace=h1.namespace)
        other = LinuxDataplane(h2.name, tmp_path / "h2", tunnel_address=h2.tunnel_address, namespace=h2.namespace)
        reports = Reports()
        manager = ComputeManager(config, driver, reports, images=Images(demo_image), dataplane=plane)

        manager.apply_network_state(host_plan(h1, [net], 1))
        assert reports.network()[-1].plugged_ports == []  # no guest yet
        assert other.apply(host_plan(h2, [net], 1)).plugged_ports == [peer_port.port_id]
        assert peer.dhcp()["ip"] == "10.251.40.12"

        manager.build_and_run_instance(request)
        assert reports.sent[-1].power_state == rpc.RUNNING, reports.sent[-1]
        # Plugged right after the build: the tap moved from the root namespace into the host's.
        assert reports.network()[-1].plugged_ports == [vm_port.port_id]
        assert vm_port.device not in sh("ip", "-br", "link").stdout
        assert f"master brq{net.network_id[:11]}" in sh("ip", "-n", h1.namespace, "link", "show", vm_port.device).stdout

        # The guest's udhcpc takes its lease at boot; then the other host's guest reaches it over VXLAN.
        wait_for(lambda: peer.ping("10.251.40.11"), timeout=120, interval=1)

        # The port is deleted while the guest runs: its tap comes off the bridge, the guest is cut off.
        net.bindings = [(h2, peer_port)]
        manager.apply_network_state(host_plan(h1, [net], 2))
        other.apply(host_plan(h2, [net], 2))
        assert reports.network()[-1].plugged_ports == []
        assert not peer.ping("10.251.40.11")
    finally:
        if driver is not None and request is not None:
            driver.destroy(InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name))
            driver.close()
        for dataplane in (plane, locals().get("other")):
            if dataplane is not None:
                for network_id in list(dataplane.memory.get("namespaces", {}).values()):
                    dataplane.dhcp.stop(network_id)
                shutil.rmtree(dataplane.dhcp.run_dir, ignore_errors=True)
        lab.stop()
