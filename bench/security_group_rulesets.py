"""What a host pays for a security group change: the ruleset built from a plan of P filtered ports with R
rules each (a remote group of M members in one of them), and loaded in one ``nft -f`` transaction into a
namespace of its own (``sgt-bench``; nothing else is touched). One JSON line per size.

    sudo .venv/bin/python bench/security_group_rulesets.py [--ports 10,100,400] [--rules 10] [--members 50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import uuid

from compute_tasks.dataplane.desired import Settings, desired_state
from compute_tasks.rpc import HostNetworkPlan, NetworkPlan, PortPlan, RulePlan

NS = "sgt-bench"


def plan(ports: int, rules: int, members: int) -> HostNetworkPlan:
    remote = [f"10.249.{i // 250}.{i % 250 + 1}/32" for i in range(members)]
    compiled = [RulePlan("egress", "IPv4"), RulePlan("ingress", "IPv4", remote=remote)]
    compiled += [
        RulePlan("ingress", "IPv4", protocol=6, port_min=1000 + i, port_max=1000 + i) for i in range(rules - 2)
    ]
    made = []
    for i in range(ports):
        port_id = str(uuid.uuid4())
        made.append(
            PortPlan(
                port_id=port_id, mac=f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}", device=f"tap{port_id[:11]}",
                ips=[f"10.249.{100 + i // 250}.{i % 250 + 1}"], filtered=True, rules=compiled,
            )
        )  # fmt: skip
    network = NetworkPlan(network_id=str(uuid.uuid4()), network_type="vxlan", mtu=1450, segmentation_id=9, ports=made)
    return HostNetworkPlan(host="bench", generation=1, networks=[network])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", default="10,100,400")
    parser.add_argument("--rules", type=int, default=10)
    parser.add_argument("--members", type=int, default=50)
    args = parser.parse_args()
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        for ports in (int(p) for p in args.ports.split(",")):
            started = time.perf_counter()
            ruleset = desired_state(
                plan(ports, args.rules, args.members), Settings(tunnel_address="10.249.0.1")
            ).ruleset
            built = time.perf_counter() - started
            loads = []
            for _ in range(3):
                drop = "table inet compute_dataplane {}\ndelete table inet compute_dataplane\n"
                drop += "table bridge compute_dataplane {}\ndelete table bridge compute_dataplane\n"
                started = time.perf_counter()
                subprocess.run(
                    ["ip", "netns", "exec", NS, "nft", "-f", "-"], input=drop + ruleset, text=True, check=True
                )
                loads.append(time.perf_counter() - started)
            print(json.dumps({
                "bench": "security_group_rulesets", "ports": ports, "rules_per_port": args.rules,
                "remote_group_members": args.members, "ruleset_lines": ruleset.count("\n"),
                "build_ms": round(built * 1000, 1), "nft_load_ms_median": round(sorted(loads)[1] * 1000, 1),
            }))  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


if __name__ == "__main__":
    main()
