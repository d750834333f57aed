"""Telling drift from change: what a reconciliation mended that the plan had not changed."""

from __future__ import annotations

from compute_tasks.dataplane.desired import HostState


class Fixes:
    """Collects what was mended: a fix of something the previous plan already had, unchanged, is drift;
    a fix of something the new plan brings is the plan being applied."""

    def __init__(self, before: HostState, want: HostState) -> None:
        self.before = _keys(before)
        self.want = _keys(want)
        self.drift: list[str] = []

    def note(self, key: tuple, message: str) -> None:
        if key in self.before and self.before.get(key) == self.want.get(key):
            self.drift.append(message)

    def note_removed(self, key: tuple, message: str) -> None:
        if key not in self.before:
            self.drift.append(message)


def _keys(state: HostState) -> dict[tuple, object]:
    keys: dict[tuple, object] = {}
    for net in state.networks:
        if net.owns_bridge:
            keys[("bridge", net.bridge)] = net.mtu
            keys[("link", net.bridge)] = True
        if net.vxlan:
            keys[("vxlan", net.vxlan)] = (net.vni, net.mtu, net.bridge)
            keys[("link", net.vxlan)] = True
            for remote in net.flood:
                keys[("flood", net.vxlan, remote)] = True
            for mac, remote in net.pinned:
                keys[("pin", net.vxlan, mac, remote)] = True
        if net.uplink:
            keys[("uplink", net.uplink)] = net.bridge
        if net.dhcp:
            keys[("dhcp", net.network_id)] = (net.dhcp.args, net.dhcp.addresses, net.dhcp.mac)
            keys[("dhcpns", net.dhcp.namespace)] = True
            keys[("dhcpleg", net.dhcp.veth)] = net.bridge
            keys[("link", net.dhcp.veth)] = True
        for port in net.ports:
            keys[("tap", port.device)] = net.bridge
    for router in state.routers:
        keys[("routerns", router.namespace)] = True
        keys[("route", router.namespace)] = (router.nexthop, router.gateway_device)
        for leg in router.legs:
            keys[("routerleg", leg.veth)] = (leg.bridge, leg.device, leg.mtu)
            keys[("routeraddr", leg.veth)] = (leg.mac, leg.mtu, leg.addresses)
            keys[("link", leg.veth)] = True
    return keys
