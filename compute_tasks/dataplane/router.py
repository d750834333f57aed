"""The routers a host runs, each in its namespace, reconciled to their desired state (``router_state``).

Per router: the namespace (remembered, as the DHCP namespaces are, so that one the plan no longer has
is deleted even after a restart), forwarding on inside it (and only there), a veth per leg with its
bridge end on the leg's network's bridge, the inside end's MAC, MTU and addresses, the default route,
and the router's nftables table; when its floating addresses change, the connections translated for
the old ones are forgotten (``conntrack``). What is wrong is put right; what the previous plan already
had, unchanged, and was wrong is reported as drift.
"""

from __future__ import annotations

from typing import Any

from compute_tasks.dataplane.commands import Link, Runner
from compute_tasks.dataplane.drift import Fixes
from compute_tasks.dataplane.firewall import Firewall
from compute_tasks.dataplane.router_state import (
    GATEWAY_PREFIX,
    INTERFACE_PREFIX,
    ROUTER_TABLE,
    RouterLegState,
    RouterState,
)

FORWARDING = "net.ipv4.ip_forward"


class Routers:
    def __init__(self, runner: Runner, root: Runner, memory: dict[str, Any]) -> None:
        self.runner = runner  # the data plane's namespace, where the legs' bridge ends are
        self.root = root
        self.memory = memory

    @property
    def namespaces(self) -> dict[str, str]:
        """The routers' namespaces this data plane made -> their router ids."""
        return self.memory.setdefault("routers", {})

    def ensure(self, router: RouterState, links: dict[str, Link], existing_ns: set[str], fix: Fixes, made) -> None:
        ns = router.namespace
        inside = Runner(ns, timeout=self.runner.timeout)
        self.namespaces[ns] = router.router_id
        if ns not in existing_ns:
            self.root.ip("netns", "add", ns)
            existing_ns.add(ns)
            fix.note(("routerns", ns), f"the namespace {ns} of router {router.router_id} was missing; made again")
        if inside.run(["sysctl", "-n", FORWARDING]).strip() != "1":
            inside.run(["sysctl", "-q", "-w", f"{FORWARDING}=1"])
            fix.note(("routerns", ns), f"router {router.router_id} did not forward; it does again")
        devices = {d["ifname"]: d for d in inside.ip_json("-j", "addr", "show")}
        batch = []
        if "UP" not in devices.get("lo", {}).get("flags", []):
            batch.append("link set lo up")
        wanted = {leg.device for leg in router.legs}
        for name in sorted(devices):
            # A leg the router no longer has: deleting its inside end deletes the veth.
            if name.startswith((INTERFACE_PREFIX, GATEWAY_PREFIX)) and name not in wanted:
                batch.append(f"link del {name}")
        for leg in router.legs:
            batch += self._ensure_leg(router, leg, links, devices, fix, made)
        # A route to delete goes before its device may; one to make, after its device and addresses.
        route = self._route(router, inside, fix)
        batch = batch + route if router.nexthop else route + batch
        if batch:
            inside.ip_batch(batch)
        memory = self.memory.setdefault("router_tables", {}).setdefault(router.router_id, {})
        Firewall(
            inside,
            memory,
            ROUTER_TABLE,
            families=("ip",),
            drift_message=f"the nftables table of router {router.router_id} was changed or missing; restored",
        ).ensure(router.ruleset, fix)
        # Connections translated for a floating address that has since moved or gone are forgotten.
        floating = dict(router.floating)
        applied = self.memory.setdefault("router_floating", {})
        before = applied.get(router.router_id)
        if before is not None and before != floating:
            self._forget(inside, {a for a in set(before) | set(floating) if before.get(a) != floating.get(a)})
        applied[router.router_id] = floating

    @staticmethod
    def _forget(inside: Runner, addresses: set[str]) -> None:
        """Connections translated for floating ``addresses`` that moved or went: the kernel keeps a
        connection's translation in its conntrack entry, so without this a steady stream (UDP above all)
        would go on reaching the old guest. Those to the address (inbound, DNAT) and those answered to it
        (outbound, SNAT) are deleted; ``conntrack`` exits non-zero when there were none."""
        for address in sorted(addresses):
            for direction in ("--orig-dst", "--reply-dst"):
                inside.run(["conntrack", "-D", "-f", "ipv4", direction, address], check=False)

    def _ensure_leg(self, router: RouterState, leg: RouterLegState, links, devices, fix: Fixes, made) -> list[str]:
        """Makes the veth when either end is missing, puts the bridge end on its bridge; returns the
        ``ip`` commands that set the inside end right."""
        outside = links.get(leg.veth)
        device = devices.get(leg.device)
        if outside is None or device is None or outside.kind != "veth":
            if outside is not None:
                self.runner.ip("link", "del", leg.veth, check=False)
            if device is not None:
                self.root.ip("-n", router.namespace, "link", "del", leg.device, check=False)
            if leg.veth not in made:
                made.append(leg.veth)
            self.runner.ip(
                "link", "add", leg.veth, "mtu", str(leg.mtu), "type", "veth",
                "peer", "name", leg.device, "netns", router.namespace,
            )  # fmt: skip
            fix.note(("routerleg", leg.veth), f"the leg {leg.device} of router {router.router_id} was missing")
            outside, device = None, {"address": "", "addr_info": [], "flags": [], "mtu": 0}
        if outside is None or outside.master != leg.bridge or not outside.up or outside.mtu != leg.mtu:
            self.runner.ip("link", "set", leg.veth, "master", leg.bridge, "mtu", str(leg.mtu), "up")
            if outside is not None:
                fix.note(
                    ("routerleg", leg.veth),
                    f"the leg {leg.veth} of router {router.router_id} was off its bridge {leg.bridge} or down",
                )
        batch = []
        if (
            device.get("address", "").lower() != leg.mac
            or "UP" not in device.get("flags", [])
            or device.get("mtu") != leg.mtu
        ):
            batch.append(f"link set {leg.device} address {leg.mac} mtu {leg.mtu} up")
        have = {f"{a['local']}/{a['prefixlen']}" for a in device.get("addr_info", []) if a.get("family") == "inet"}
        for address in sorted(have - set(leg.addresses)):
            batch.append(f"addr del {address} dev {leg.device}")
        for address in sorted(set(leg.addresses) - have):
            batch.append(f"addr add {address} dev {leg.device}")
        if batch and device.get("address"):
            fix.note(
                ("routeraddr", leg.veth),
                f"the address, MAC or MTU of {leg.device} of router {router.router_id} was wrong",
            )
        return batch

    def _route(self, router: RouterState, inside: Runner, fix: Fixes) -> list[str]:
        routes = inside.ip_json("-j", "route", "show", "default")
        if not router.nexthop:
            return ["route del default"] if routes else []
        if len(routes) == 1 and (routes[0].get("gateway"), routes[0].get("dev")) == (
            router.nexthop,
            router.gateway_device,
        ):
            return []
        fix.note(("route", router.namespace), f"the default route of router {router.router_id} was missing or wrong")
        return [f"route replace default via {router.nexthop} dev {router.gateway_device}"]

    def plugged(self, routers: tuple[RouterState, ...], links: dict[str, Link]) -> set[str]:
        """The router ports whose veth is up on its bridge."""
        return {
            leg.port_id
            for router in routers
            for leg in router.legs
            if leg.veth in links and links[leg.veth].master == leg.bridge and links[leg.veth].up
        }

    def remove_unwanted(self, routers: tuple[RouterState, ...]) -> None:
        """Deletes the namespaces of the routers the plan no longer has (their legs' veths go with them)."""
        wanted = {router.namespace for router in routers}
        tables = self.memory.setdefault("router_tables", {})
        for ns, router_id in sorted(self.namespaces.items()):
            if ns in wanted:
                continue
            self.root.ip("netns", "del", ns, check=False)
            del self.namespaces[ns]
            tables.pop(router_id, None)
            self.memory.setdefault("router_floating", {}).pop(router_id, None)
