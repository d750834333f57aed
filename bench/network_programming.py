"""What it costs a host to program its network: one JSON line.

One simulated host (a namespace ``dpt-h1`` on an underlay of its own, as in the data plane's tests) is
sent a plan of ``--networks`` VXLAN networks with ``--ports`` ports each (persistent tap devices stand
in for the guests) and a DHCP server per network: the time to apply it cold, to apply it again with
nothing changed, and of a periodic check. Then one network with ``--peers`` remote hosts and
``--neighbours`` remote ports: the fdb entries a host holds per peer per network, cold and again.

Needs root; makes 10.251.0.0/16 unreachable while it runs and removes everything it made.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

# ``--root TREE`` (bench/compare.py) measures another checkout's data plane with this script.
_ROOT = Path(sys.argv[sys.argv.index("--root") + 1]) if "--root" in sys.argv[:-1] else Path(__file__).parents[1]
sys.path[0] = str(_ROOT.resolve())

from compute_tasks.dataplane.linux import LinuxDataplane  # noqa: E402
from compute_tasks.rpc import HostNetworkPlan, Neighbour, NetworkPlan, PortPlan, SubnetPlan  # noqa: E402
from tests.integration.dataplane.lab import Lab, sh  # noqa: E402


def network(index: int, ports: list[PortPlan], remotes=(), neighbours=()) -> NetworkPlan:
    cidr = ipaddress.IPv4Network(f"10.251.{100 + index % 150}.0/24")
    return NetworkPlan(
        network_id=str(uuid.UUID(f"{index + 1:08x}-0000-4000-8000-000000000000")),
        network_type="vxlan",
        mtu=1450,
        segmentation_id=2000 + index,
        subnets=[SubnetPlan(subnet_id=f"s{index}", cidr=str(cidr), gateway_ip=str(cidr[1]))],
        ports=ports,
        dhcp_mac=f"fa:16:3e:fe:{index // 256:02x}:{index % 256:02x}",
        dhcp_ips=[str(cidr[2])],
        leases=ports,
        remotes=list(remotes),
        neighbours=list(neighbours),
    )


def ports_for(index: int, count: int) -> list[PortPlan]:
    cidr = ipaddress.IPv4Network(f"10.251.{100 + index % 150}.0/24")
    ports = []
    for n in range(count):
        port_id = str(uuid.UUID(f"{index:04x}{n:04x}-0000-4000-8000-{index:012x}"))
        ports.append(
            PortPlan(
                port_id=port_id,
                mac=f"fa:16:3e:{index // 256:02x}:{index % 256:02x}:{n:02x}",
                device=f"tap{port_id[:11]}",
                ips=[str(cidr[10 + n])],
            )
        )
    return ports


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return (time.perf_counter() - started) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--ports", type=int, default=5)
    parser.add_argument("--peers", type=int, default=200)
    parser.add_argument("--neighbours", type=int, default=2000)
    parser.add_argument("--root", type=Path, default=_ROOT, help="the checkout whose data plane is measured")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("network_programming: needs root (namespaces, bridges, VXLAN)")
    root = Path(tempfile.mkdtemp(prefix="dpt-bench-"))
    lab = Lab(root)
    plane = None
    result: dict[str, object] = {"bench": "network_programming", "networks": args.networks, "ports": args.ports}
    try:
        lab.start(1)
        host = lab.hosts[0]
        plane = LinuxDataplane(host.name, root / "state", tunnel_address=host.tunnel_address, namespace=host.namespace)
        networks = []
        for index in range(args.networks):
            ports = ports_for(index, args.ports)
            for port in ports:
                sh("ip", "-n", host.namespace, "tuntap", "add", "dev", port.device, "mode", "tap")
            networks.append(network(index, ports, remotes=["10.251.0.2"]))
        plan = HostNetworkPlan(host=host.name, generation=1, networks=networks)
        cold, report = timed(lambda: plane.apply(plan))
        assert not report.error, report.error
        assert len(report.plugged_ports) == args.networks * args.ports, report
        again = [timed(lambda: plane.apply(plan))[0] for _ in range(5)]
        checks = [timed(plane.check)[0] for _ in range(5)]
        result.update(
            cold_apply_ms=round(cold, 1),
            reapply_unchanged_ms=round(statistics.median(again), 1),
            periodic_check_ms=round(statistics.median(checks), 1),
            cold_ms_per_network=round(cold / max(args.networks, 1), 2),
        )

        # One network with many peers: fdb entries are per peer per network.
        peers = [str(ipaddress.IPv4Address("10.251.1.0") + n) for n in range(args.peers)]
        neighbours = [
            Neighbour(mac=f"fa:16:3e:7f:{n // 256:02x}:{n % 256:02x}", ip="", remote=peers[n % len(peers)])
            for n in range(args.neighbours)
        ]
        wide = network(args.networks, ports_for(args.networks, 1), remotes=peers, neighbours=neighbours)
        sh("ip", "-n", host.namespace, "tuntap", "add", "dev", wide.ports[0].device, "mode", "tap")
        plan2 = HostNetworkPlan(host=host.name, generation=2, networks=[*networks, wide])
        cold2, report2 = timed(lambda: plane.apply(plan2))
        assert not report2.error, report2.error
        entries = sh("bridge", "-n", host.namespace, "fdb", "show", "dev", f"vxlan-{wide.segmentation_id}").stdout
        again2 = statistics.median(timed(lambda: plane.apply(plan2))[0] for _ in range(3))
        result.update(
            peers=args.peers,
            neighbours=args.neighbours,
            fdb_entries=sum(1 for line in entries.splitlines() if " dst " in line),
            add_peered_network_ms=round(cold2, 1),
            reapply_with_peers_ms=round(again2, 1),
        )
    finally:
        if plane is not None:
            for network_id in list(plane.memory.get("namespaces", {}).values()):
                plane.dhcp.stop(network_id)
            shutil.rmtree(plane.dhcp.run_dir, ignore_errors=True)
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
