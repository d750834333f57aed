"""The Linux data plane: bridges, VXLAN devices, fdb entries, dnsmasq and nftables, reconciled to a plan.

Per network the host has ports on: a bridge (``brq`` + network id), for a VXLAN network a VXLAN device
on it that learns nothing (every remote MAC is pinned to its host from the plan, BUM traffic goes to
each remote host by an all-zero fdb entry), for a flat network the operator's bridge or an interface
enslaved to a bridge made for it; the guests' taps on the bridge; a dnsmasq in its own namespace with a
veth leg on the bridge. Two nftables tables (see ``desired.ruleset``) keep guests off the host and the
DHCP port's frames off the wire. The routers the host runs have a namespace each, with a veth leg on the
bridge of each of their networks (see ``router``).

Everything lives in one network namespace, the host's own or ``COMPUTE_NETWORK_NAMESPACE``; taps that
libvirt made in the host's own namespace are moved into it before they are plugged. The data plane
removes only what it made itself (the names are remembered in its state) or what the previous plan had,
so it can share a namespace with anything else.
"""

from __future__ import annotations

import logging
from pathlib import Path

from compute_tasks.dataplane.base import Dataplane, Outcome
from compute_tasks.dataplane.commands import CommandFailed, Link, Runner
from compute_tasks.dataplane.desired import (
    DHCP_INSIDE,
    OWNED_PREFIXES,
    HostState,
    NetworkState,
    PlanError,
    Settings,
    desired_state,
)
from compute_tasks.dataplane.dhcp import DhcpServers
from compute_tasks.dataplane.drift import Fixes
from compute_tasks.dataplane.firewall import Firewall
from compute_tasks.dataplane.metadata import MetadataProxies
from compute_tasks.dataplane.router import Routers
from compute_tasks.rpc import HostNetworkPlan, PortPlan

log = logging.getLogger(__name__)

ZERO_MAC = "00:00:00:00:00:00"
TABLE = "compute_dataplane"


class LinuxDataplane(Dataplane):
    kind = "linux"

    def __init__(
        self,
        host: str,
        state_dir: Path,
        *,
        tunnel_address: str = "",
        vxlan_port: int = 4789,
        namespace: str = "",
        physical_networks=(),
        run_dir: Path | None = None,
        timeout: float = 20.0,
    ) -> None:
        super().__init__(host, state_dir, tunnel_address=tunnel_address, physical_networks=physical_networks)
        self.namespace = namespace
        self.vxlan_port = vxlan_port
        self.devices = dict(physical_networks)
        self.runner = Runner(namespace, timeout=timeout)
        self.root = Runner("", timeout=timeout)
        self.firewall = Firewall(self.runner, self.memory, TABLE)
        self.dhcp = DhcpServers(self.runner, run_dir or Path("/run/compute-dataplane") / (namespace or host))
        self.metadata = MetadataProxies(self.runner, self.dhcp.run_dir, self.dhcp.group)
        self.routers = Routers(self.runner, self.root, self.memory)

    @property
    def metadata_socket(self) -> Path:
        """Where the host's metadata agent listens for the proxies."""
        return self.metadata.socket_path

    # --- the whole plan -------------------------------------------------------------------------------------

    def _settings(self, links: dict[str, Link]) -> Settings:
        return Settings(
            tunnel_address=self.tunnel_address,
            vxlan_port=self.vxlan_port,
            namespace=self.namespace,
            physical_networks=self.devices,
            bridges=frozenset(d for d in self.devices.values() if d in links and links[d].kind == "bridge"),
            table=TABLE,
        )

    def _desired(self, plan: HostNetworkPlan | None, links: dict[str, Link]) -> HostState:
        if plan is None:
            return HostState()
        return desired_state(plan, self._settings(links))

    def _reconcile(self, plan: HostNetworkPlan, previous: HostNetworkPlan | None) -> Outcome:
        links = self.runner.links()
        want = desired_state(plan, self._settings(links))
        before = self._desired(previous, links)
        fix = Fixes(before, want)
        made = self.memory.setdefault("links", [])
        namespaces = self.memory.setdefault("namespaces", {})
        outcome = Outcome(errors=list(want.problems))
        fdb = self._fdb_by_device()
        existing_ns = self.root.namespaces()
        for network in want.networks:
            try:
                self._ensure_network(network, links, fdb, existing_ns, fix, made, namespaces)
            except (CommandFailed, PlanError, RuntimeError, OSError) as exc:
                outcome.errors.append(f"network {network.network_id}: {exc}")
        for router in want.routers:
            try:
                self.routers.ensure(router, links, existing_ns, fix, made)
            except (CommandFailed, RuntimeError, OSError) as exc:
                outcome.errors.append(f"router {router.router_id}: {exc}")
        self._remove_unwanted(want, before, links, fix, made, namespaces)
        self.routers.remove_unwanted(want.routers)
        try:
            self.firewall.ensure(want.ruleset, fix)
        except CommandFailed as exc:
            outcome.errors.append(f"firewall: {exc}")
        ports = [p for n in want.networks for p in n.ports]
        outcome.plugged = self._plug_ports(want, ports, fix) | self.routers.plugged(want.routers, self.runner.links())
        outcome.drift = fix.drift
        return outcome

    def _plug(self, plan: HostNetworkPlan, ports: list[PortPlan]) -> set[str]:
        want = desired_state(plan, self._settings(self.runner.links()))
        return self._plug_ports(want, ports, Fixes(want, want))

    # --- one network ----------------------------------------------------------------------------------------

    def _ensure_network(self, net, links, fdb, existing_ns, fix, made, namespaces) -> None:
        if net.owns_bridge:
            self._ensure_bridge(net, links, fix, made)
        elif net.bridge not in links:
            raise PlanError(f"the bridge {net.bridge} of physical network is missing")
        if net.vxlan:
            self._ensure_vxlan(net, links, fix, made)
            self._ensure_fdb(net, fdb.get(net.vxlan, []), fix)
        if net.uplink:
            link = links.get(net.uplink)
            if link is None:
                raise PlanError(f"interface {net.uplink} of the physical network is missing")
            if link.master != net.bridge or not link.up:
                self.runner.ip("link", "set", net.uplink, "master", net.bridge, "up")
                fix.note(("uplink", net.uplink), f"interface {net.uplink} was not on bridge {net.bridge}")
        if net.dhcp is not None:
            self._ensure_dhcp(net, links, existing_ns, fix, made, namespaces)

    def _ensure_bridge(self, net: NetworkState, links, fix, made) -> None:
        link = links.get(net.bridge)
        if link is not None and link.kind != "bridge":
            self.runner.ip("link", "del", net.bridge)
            link = None
        if link is None:
            _remember(made, net.bridge)
            self.runner.ip_batch(
                [
                    f"link add name {net.bridge} type bridge stp_state 0 forward_delay 0",
                    # No IPv6 link-local address: the host has no address on a guest network.
                    f"link set {net.bridge} addrgenmode none",
                    f"link set {net.bridge} mtu {net.mtu} up",
                ]
            )
            fix.note(("bridge", net.bridge), f"bridge {net.bridge} of network {net.network_id} was missing; made again")
            links[net.bridge] = Link(net.bridge, "bridge", "", net.mtu, True, "", {})
        elif link.mtu != net.mtu or not link.up:
            self.runner.ip("link", "set", net.bridge, "mtu", str(net.mtu), "up")
            fix.note(("bridge", net.bridge), f"bridge {net.bridge} was down or had MTU {link.mtu}")

    def _ensure_vxlan(self, net: NetworkState, links, fix, made) -> None:
        link = links.get(net.vxlan)
        right = (
            link is not None
            and link.kind == "vxlan"
            and int(link.vxlan.get("id", -1)) == net.vni
            and link.vxlan.get("local") == self.tunnel_address
            and int(link.vxlan.get("port", 0)) == self.vxlan_port
            and not link.vxlan.get("learning", False)
        )
        if link is not None and not right:
            self.runner.ip("link", "del", net.vxlan)
        if not right:
            _remember(made, net.vxlan)
            self.runner.ip(
                "link", "add", net.vxlan, "type", "vxlan", "id", str(net.vni), "local", self.tunnel_address,
                "dstport", str(self.vxlan_port), "nolearning",
            )  # fmt: skip
            self.runner.ip("link", "set", net.vxlan, "master", net.bridge, "mtu", str(net.mtu), "up")
            fix.note(("vxlan", net.vxlan), f"VXLAN device {net.vxlan} was missing or wrong; made again")
        elif link.master != net.bridge or link.mtu != net.mtu or not link.up:
            self.runner.ip("link", "set", net.vxlan, "master", net.bridge, "mtu", str(net.mtu), "up")
            fix.note(("vxlan", net.vxlan), f"VXLAN device {net.vxlan} was off its bridge, down or of another MTU")

    def _ensure_fdb(self, net: NetworkState, entries: list[dict], fix) -> None:
        flooding = {e["dst"] for e in entries if e.get("dst") and e.get("mac") == ZERO_MAC}
        pinned = {(e["mac"].lower(), e["dst"]) for e in entries if e.get("dst") and e.get("mac") != ZERO_MAC}
        port = f" port {self.vxlan_port}" if self.vxlan_port != 4789 else ""
        lines = []
        for remote in sorted(set(net.flood) - flooding):
            lines.append(f"fdb append {ZERO_MAC} dev {net.vxlan} dst {remote}{port}")
            fix.note(("flood", net.vxlan, remote), f"{net.vxlan} did not flood to {remote}")
        for remote in sorted(flooding - set(net.flood)):
            lines.append(f"fdb del {ZERO_MAC} dev {net.vxlan} dst {remote}")
            fix.note_removed(("flood", net.vxlan, remote), f"{net.vxlan} flooded to {remote}, not a peer")
        want = set(net.pinned)
        for mac, remote in sorted(want - pinned):
            lines.append(f"fdb replace {mac} dev {net.vxlan} dst {remote}{port}")
            fix.note(("pin", net.vxlan, mac, remote), f"fdb entry {mac} -> {remote} on {net.vxlan} was missing")
        for mac, remote in sorted(pinned - want):
            lines.append(f"fdb del {mac} dev {net.vxlan} dst {remote}")
            fix.note_removed(("pin", net.vxlan, mac, remote), f"fdb entry {mac} -> {remote} on {net.vxlan} was stale")
        self.runner.bridge_batch(lines)

    def _fdb_by_device(self) -> dict[str, list[dict]]:
        by_device: dict[str, list[dict]] = {}
        for entry in self.runner.fdb_all():
            if entry.get("dst"):
                by_device.setdefault(entry.get("ifname", ""), []).append(entry)
        return by_device

    def _ensure_dhcp(self, net: NetworkState, links, existing_ns, fix, made, namespaces) -> None:
        dhcp = net.dhcp
        assert dhcp is not None
        key = ("dhcp", net.network_id)
        if dhcp.namespace not in existing_ns:
            namespaces[dhcp.namespace] = net.network_id
            self.root.ip("netns", "add", dhcp.namespace)
            existing_ns.add(dhcp.namespace)
            fix.note(("dhcpns", dhcp.namespace), f"DHCP namespace {dhcp.namespace} was missing; made again")
        inside = self.root.ip_json("-n", dhcp.namespace, "-j", "addr", "show")
        leg = next((i for i in inside if i.get("ifname") == DHCP_INSIDE), None)
        outside = links.get(dhcp.veth)
        if leg is None or outside is None:
            if outside is not None:
                self.runner.ip("link", "del", dhcp.veth)
            if leg is not None:
                self.root.ip("-n", dhcp.namespace, "link", "del", DHCP_INSIDE)
            _remember(made, dhcp.veth)
            self.runner.ip(
                "link", "add", dhcp.veth, "mtu", str(dhcp.mtu), "type", "veth",
                "peer", "name", DHCP_INSIDE, "netns", dhcp.namespace,
            )  # fmt: skip
            outside = None
            leg = {"address": "", "addr_info": [], "flags": [], "mtu": 0}
            fix.note(("dhcpleg", dhcp.veth), f"the DHCP leg {dhcp.veth} of network {net.network_id} was missing")
        if outside is None or outside.master != net.bridge or not outside.up or outside.mtu != dhcp.mtu:
            self.runner.ip("link", "set", dhcp.veth, "master", net.bridge, "mtu", str(dhcp.mtu), "up")
            if outside is not None:
                fix.note(("dhcpleg", dhcp.veth), f"the DHCP leg {dhcp.veth} was off its bridge or down")
        have = {f"{a['local']}/{a['prefixlen']}" for a in leg.get("addr_info", []) if a.get("family") == "inet"}
        batch = []
        if leg.get("address", "").lower() != dhcp.mac or "UP" not in leg.get("flags", []) or leg.get("mtu") != dhcp.mtu:
            batch.append(f"link set {DHCP_INSIDE} address {dhcp.mac} mtu {dhcp.mtu} up")
            batch.append("link set lo up")
        for address in sorted(have - set(dhcp.addresses)):
            batch.append(f"addr del {address} dev {DHCP_INSIDE}")
        for address in sorted(set(dhcp.addresses) - have):
            batch.append(f"addr add {address} dev {DHCP_INSIDE}")
        if batch:
            self.root.ip("-n", dhcp.namespace, "-batch", "-", input="".join(line + "\n" for line in batch))
            if have and set(dhcp.addresses) != have:
                fix.note(key, f"the DHCP addresses of network {net.network_id} were wrong")
        was_running = self.dhcp.pid(net.network_id) is not None
        _files_changed, started = self.dhcp.ensure(net.network_id, dhcp)
        if started:
            what = "was not running; started" if not was_running else "ran with another configuration; restarted"
            fix.note(key, f"dnsmasq of network {net.network_id} {what}")
        if self.metadata.ensure(net.network_id, dhcp.namespace):
            fix.note(key, f"the metadata proxy of network {net.network_id} was not running; started")

    # --- what the plan no longer has --------------------------------------------------------------------------

    def _remove_unwanted(self, want: HostState, before: HostState, links, fix, made, namespaces) -> None:
        wanted = set(want.router_veths)
        for net in want.networks:
            if net.owns_bridge:
                wanted.add(net.bridge)
            wanted.update(n for n in (net.vxlan, net.dhcp.veth if net.dhcp else "") if n)
        known = set(made) | set(before.router_veths)
        for net in before.networks:
            if net.owns_bridge:
                known.add(net.bridge)
            known.update(n for n in (net.vxlan, net.dhcp.veth if net.dhcp else "") if n)
        removed = set()
        for name in sorted(known - wanted):
            if name.startswith(OWNED_PREFIXES) and name in links:
                self.runner.ip("link", "del", name, check=False)
                removed.add(name)
                fix.note_removed(("link", name), f"{name} was left over; removed")
            if name in made:
                made.remove(name)
        wanted_ns = {n.dhcp.namespace: n.network_id for n in want.networks if n.dhcp}
        for ns, network_id in sorted(namespaces.items()):
            if ns in wanted_ns:
                continue
            self.metadata.stop(network_id)
            self.dhcp.stop(network_id)
            self.root.ip("netns", "del", ns, check=False)
            del namespaces[ns]
        for net_id in {n.network_id for n in want.networks if n.dhcp is None}:
            self.metadata.stop(net_id)
            self.dhcp.stop(net_id)
        # A device on one of the data plane's bridges that the plan does not put there comes off it
        # (a port deleted while its guest runs): on the operator's bridges, only taps it plugged itself.
        ours = {n.bridge: n for n in want.networks}
        plugged_before = set(self.memory.get("taps", []))
        router_veths = want.router_veths
        for link in links.values():
            net = ours.get(link.master)
            if net is None or link.name in removed or link.name in net.members:
                continue
            if net.bridge in (want.devices.get(link.name), router_veths.get(link.name)):
                continue
            if net.owns_bridge or link.name in plugged_before:
                self.runner.ip("link", "set", link.name, "nomaster", check=False)
                fix.note_removed(("tap", link.name), f"{link.name} was on {net.bridge} without a port; unplugged")
        for link in links.values():
            if link.name in plugged_before and link.name not in want.devices and link.master:
                self.runner.ip("link", "set", link.name, "nomaster", check=False)

    # --- taps -----------------------------------------------------------------------------------------------

    def _plug_ports(self, want: HostState, ports: list[PortPlan], fix) -> set[str]:
        links = self.runner.links()
        missing = [p.device for p in ports if p.device not in links]
        if missing and self.namespace:
            # libvirt made the tap in the host's own namespace: it moves into the data plane's, once libvirt
            # is done with it (it sets the tap up last, when the guest starts; moving it before would pull
            # it from under libvirt's feet).
            root = self.root.links()
            # Only this host's guests' taps: hosts sharing one machine (each in its namespace) see each
            # other's in the machine's namespace, and a live migration's two ends have the same name.
            local = self.local_devices() if self.local_devices is not None else None
            for device in missing:
                if device in root and root[device].up and (local is None or device in local):
                    self.root.ip("link", "set", device, "netns", self.namespace, check=False)
            links = self.runner.links()
        taps = self.memory.setdefault("taps", [])
        changed = False
        lost: list[PortPlan] = []
        for port in ports:
            link = links.get(port.device)
            bridge = want.devices.get(port.device)
            net = next((n for n in want.networks if n.bridge == bridge), None)
            if link is None or net is None:
                continue
            _remember(taps, port.device)
            if link.master != bridge or not link.up or link.mtu != net.mtu:
                self.runner.ip("link", "set", port.device, "master", bridge, "mtu", str(net.mtu), "up", check=False)
                changed = True
                if port.port_id in self.plugged and link.master != bridge:
                    lost.append(port)
        if changed:
            links = self.runner.links()
        for port in lost:
            if links.get(port.device) is not None and links[port.device].master == want.devices.get(port.device):
                fix.drift.append(f"tap {port.device} of port {port.port_id} was off its bridge; plugged again")
        # Only what is on its bridge now counts as plugged.
        plugged = {
            p.port_id for p in ports if p.device in links and links[p.device].master == want.devices.get(p.device)
        }
        for name in list(taps):
            if name not in want.devices:
                taps.remove(name)
        return plugged


def _remember(names: list[str], name: str) -> None:
    if name not in names:
        names.append(name)
