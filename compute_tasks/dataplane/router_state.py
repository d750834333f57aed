"""The routers of a host's plan turned into what they stand for on the host: pure, like ``desired``.

A router is a network namespace, ``[<ns>-]qrouter-<router id>``, that forwards between its legs. Each
leg is a veth: its bridge end (``rtr`` + 11 characters of the port id) sits on the bridge of the leg's
network, its other end (``qr-`` for an interface, ``qg-`` for the gateway, + the same 11 characters)
inside the namespace with the port's MAC, addresses and MTU. Inside too: a default route to the
gateway's next hop, and one nftables table (family ip, replaced as a whole) doing the translations:

- a floating address becomes its fixed address on the way in, whichever leg it came by (a guest behind
  another of the router's subnets reaches it by its floating address too), and the fixed address
  becomes the floating one on the way out by the gateway;
- with SNAT, what else leaves by the gateway from the interfaces' subnets leaves from the gateway's
  first address;
- a guest reaching a floating address whose fixed address is on its own subnet (hairpin) reaches it
  from the router's address on that subnet, so that the answer comes back through the router.

The floating addresses are on the gateway device too (as /32), so that the router answers ARP for them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from compute_tasks.rpc import RouterLeg, RouterPlan

ROUTER_VETH_PREFIX = "rtr"  # the bridge end of a router leg's veth
INTERFACE_PREFIX = "qr-"  # a leg on one of the router's subnets, inside its namespace
GATEWAY_PREFIX = "qg-"  # the leg on the external network, inside its namespace
ROUTER_TABLE = "compute_router"  # the nftables table inside a router's namespace (family ip)


@dataclass(frozen=True)
class RouterLegState:
    """One leg of a router: a veth from the network's bridge into the router's namespace."""

    port_id: str
    network_id: str
    bridge: str
    veth: str  # the bridge end, in the data plane's namespace
    device: str  # the end inside the router's namespace
    mac: str
    addresses: tuple[str, ...]  # "ip/prefixlen" on ``device``; the floating addresses among them on the gateway
    mtu: int


@dataclass(frozen=True)
class RouterState:
    router_id: str
    namespace: str
    legs: tuple[RouterLegState, ...]
    gateway_device: str = ""  # "" without a gateway
    nexthop: str = ""  # the default route's, "" for none
    ruleset: str = ""  # nft input for the router's table; "" when the router translates nothing
    floating: tuple[tuple[str, str], ...] = ()  # (floating address, fixed address)


def router_namespace_name(namespace: str, router_id: str) -> str:
    """Named after the data plane's namespace too, as the DHCP namespaces are."""
    return f"{namespace}-qrouter-{router_id}" if namespace else f"qrouter-{router_id}"


def router_veth_name(port_id: str) -> str:
    return f"{ROUTER_VETH_PREFIX}{port_id[:11]}"


def router_states(
    routers: list[RouterPlan], bridges: dict[str, str], namespace: str
) -> tuple[tuple[RouterState, ...], tuple[str, ...]]:
    """The routers this host can have, and why it cannot have the rest (or some of their legs).

    ``bridges`` maps the id of each network this host has to its bridge: a leg on any other network is
    left out. So is a leg whose id, MAC or addresses are not what they should be, and a floating address
    that is not one or is given twice."""
    states: list[RouterState] = []
    problems: list[str] = []
    veths: set[str] = set()
    for plan in sorted(routers, key=lambda r: r.router_id):
        if not _ID_RE.match(plan.router_id):
            problems.append(f"router id {plan.router_id!r} is not a UUID")
            continue
        legs: list[RouterLegState] = []
        for leg_plan, prefix in [(i, INTERFACE_PREFIX) for i in plan.interfaces] + (
            [(plan.gateway, GATEWAY_PREFIX)] if plan.gateway is not None else []
        ):
            try:
                leg = _leg(leg_plan, prefix, bridges)
                if leg.veth in veths:
                    raise ValueError("another router port's id begins with the same 11 characters")
            except ValueError as exc:
                problems.append(f"router {plan.router_id}: port {leg_plan.port_id!r} left out: {exc}")
                continue
            veths.add(leg.veth)
            legs.append(leg)
        interfaces = [leg for leg in legs if leg.device.startswith(INTERFACE_PREFIX)]
        gateway = next((leg for leg in legs if leg.device.startswith(GATEWAY_PREFIX)), None)
        nexthop = ""
        floating: dict[str, str] = {}
        if gateway is not None:
            nexthop = _nexthop(plan, gateway, problems)
            floating = _floating(plan, gateway, problems)
            # The floating addresses are the gateway's too: the router answers ARP for them.
            extra = tuple(f"{address}/32" for address in sorted(floating, key=ipaddress.IPv4Address))
            gateway = replace(gateway, addresses=gateway.addresses + extra)
            legs = interfaces + [gateway]
        elif plan.floating:
            problems.append(f"router {plan.router_id}: floating addresses without a gateway left out")
        states.append(
            RouterState(
                router_id=plan.router_id,
                namespace=router_namespace_name(namespace, plan.router_id),
                legs=tuple(legs),
                gateway_device=gateway.device if gateway is not None else "",
                nexthop=nexthop,
                ruleset=router_ruleset(interfaces, gateway, floating, snat=plan.snat),
                floating=tuple(floating.items()),
            )
        )
    return tuple(states), tuple(problems)


def router_ruleset(
    interfaces: list[RouterLegState], gateway: RouterLegState | None, floating: dict[str, str], *, snat: bool
) -> str:
    """The router's nftables table as ``nft -f`` input ("" when it translates nothing).

    Maps, not a rule per address: one lookup whatever the number of floating addresses."""
    if gateway is None or not (floating or snat):
        return ""
    lines = [f"table ip {ROUTER_TABLE} {{"]
    if floating:
        inward = ", ".join(f"{f} : {fixed}" for f, fixed in floating.items())
        lines += [
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            f"    dnat to ip daddr map {{ {inward} }}",
            "  }",
        ]
    lines += ["  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;"]
    if floating:
        for leg in interfaces:
            # Hairpin: translated to a guest on the subnet it came from; the answer must come back here.
            for subnet in _subnets([leg]):
                lines.append(f'    oifname "{leg.device}" ip saddr {subnet} ct status dnat masquerade')
        outward = ", ".join(f"{fixed} : {f}" for f, fixed in floating.items())
        # Before the router's own address: a guest with a floating address leaves from it.
        lines.append(f'    oifname "{gateway.device}" snat to ip saddr map {{ {outward} }}')
    subnets = _subnets(interfaces)
    if snat and subnets:
        source = gateway.addresses[0].split("/")[0]
        lines.append(f'    oifname "{gateway.device}" ip saddr {{ {", ".join(subnets)} }} snat to {source}')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _leg(plan: RouterLeg, prefix: str, bridges: dict[str, str]) -> RouterLegState:
    if not _ID_RE.match(plan.port_id):
        raise ValueError("its id is not a UUID")
    bridge = bridges.get(plan.network_id)
    if bridge is None:
        raise ValueError(f"its network {plan.network_id} is not on this host")
    if not _MAC_RE.match(plan.mac or ""):
        raise ValueError(f"its MAC {plan.mac!r} is not one")
    mtu = plan.mtu
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535:
        raise ValueError(f"its MTU {mtu!r} is not one")
    addresses = []
    for text in plan.addresses:
        try:
            address = ipaddress.ip_interface(text)
        except ValueError:
            raise ValueError(f"its address {text!r} is not one") from None
        if address.version != 4 or "/" not in text:
            raise ValueError(f"its address {text!r} is not IPv4 with a prefix length, which this data plane routes")
        addresses.append(str(address))
    if not addresses:
        raise ValueError("it has no address")
    return RouterLegState(
        port_id=plan.port_id,
        network_id=plan.network_id,
        bridge=bridge,
        veth=router_veth_name(plan.port_id),
        device=f"{prefix}{plan.port_id[:11]}",
        mac=plan.mac.lower(),
        addresses=tuple(addresses),
        mtu=mtu,
    )


def _nexthop(plan: RouterPlan, gateway: RouterLegState, problems: list[str]) -> str:
    if not plan.gateway_nexthop:
        return ""
    try:
        nexthop = ipaddress.IPv4Address(plan.gateway_nexthop)
    except ValueError:
        problems.append(f"router {plan.router_id}: next hop {plan.gateway_nexthop!r} is no address; no default route")
        return ""
    if not any(nexthop in ipaddress.IPv4Interface(a).network for a in gateway.addresses):
        problems.append(f"router {plan.router_id}: next hop {nexthop} is not on the gateway's subnet; no default route")
        return ""
    return str(nexthop)


def _floating(plan: RouterPlan, gateway: RouterLegState, problems: list[str]) -> dict[str, str]:
    """floating address -> fixed address, in the plan's order."""
    floating: dict[str, str] = {}
    own = {a.split("/")[0] for a in gateway.addresses}
    for item in plan.floating:
        try:
            address, fixed = str(ipaddress.IPv4Address(item.floating_ip)), str(ipaddress.IPv4Address(item.fixed_ip))
        except ValueError:
            problems.append(f"router {plan.router_id}: floating {item.floating_ip!r} -> {item.fixed_ip!r} left out")
            continue
        if address in floating or fixed in floating.values() or address in own:
            problems.append(f"router {plan.router_id}: floating address {address} -> {fixed} clashes; left out")
            continue
        floating[address] = fixed
    return floating


def _subnets(legs: list[RouterLegState]) -> list[str]:
    nets = {ipaddress.IPv4Interface(a).network for leg in legs for a in leg.addresses}
    return [str(n) for n in sorted(nets)]


_ID_RE = re.compile(r"^[0-9a-fA-F-]{32,36}$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
