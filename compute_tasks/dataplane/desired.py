"""A host's network plan turned into the devices, DHCP servers and firewall rules it stands for.

Pure functions of the plan and the host's configuration, no system calls: what ``LinuxDataplane``
then makes the kernel agree with. Every name the data plane makes starts with one of its prefixes, so
it can tell its own devices from anything else on the host.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from compute_tasks.rpc import HostNetworkPlan, NetworkPlan, PortPlan, SubnetPlan

BRIDGE_PREFIX = "brq"  # a network's bridge: brq + 11 characters of the network id
VXLAN_PREFIX = "vxlan-"  # a network's VXLAN device: vxlan-<VNI>
DHCP_VETH_PREFIX = "dhq"  # the bridge end of a network's DHCP server's veth
DHCP_INSIDE = "ns-dhcp"  # the DHCP server's end, inside its namespace
OWNED_PREFIXES = (BRIDGE_PREFIX, VXLAN_PREFIX, DHCP_VETH_PREFIX)

DHCP_LEASE_SECONDS = 86400
VXLAN_OVERHEAD = 50  # outer Ethernet, IPv4, UDP and VXLAN headers


class PlanError(ValueError):
    """The plan asks for something this host cannot have (a physical network it does not carry)."""


def short_id(network_id: str) -> str:
    return network_id[:11]


def bridge_name(network_id: str) -> str:
    return f"{BRIDGE_PREFIX}{short_id(network_id)}"


def vxlan_name(vni: int) -> str:
    return f"{VXLAN_PREFIX}{vni}"


def dhcp_veth_name(network_id: str) -> str:
    return f"{DHCP_VETH_PREFIX}{short_id(network_id)}"


def dhcp_namespace_name(namespace: str, network_id: str) -> str:
    """The DHCP server's own namespace: named after the data plane's namespace too, so that hosts
    sharing one machine (each in its namespace) never share a DHCP namespace."""
    return f"{namespace}-qdhcp-{network_id}" if namespace else f"qdhcp-{network_id}"


@dataclass(frozen=True)
class Dhcp:
    """One network's dnsmasq: its namespace and veth, the command line, and the files it reads."""

    namespace: str
    veth: str  # the bridge end
    mac: str
    addresses: tuple[str, ...]  # "ip/prefixlen" on the inside end
    mtu: int
    args: tuple[str, ...]  # after "dnsmasq", without the paths of the files (added by the data plane)
    hosts: str  # --dhcp-hostsfile: MAC,hostname,IP of this host's ports
    options: str  # --dhcp-optsfile: router, DNS, routes and MTU per subnet
    addn_hosts: str  # --addn-hosts: the names of every port of the network


@dataclass(frozen=True)
class NetworkState:
    """What one network looks like on this host."""

    network_id: str
    network_type: str
    bridge: str
    owns_bridge: bool  # False: an operator's bridge of a flat network, never changed or removed
    mtu: int
    vxlan: str = ""  # the VXLAN device, for a vxlan network
    vni: int = 0
    uplink: str = ""  # an interface of a flat network, enslaved to the bridge made for it
    ports: tuple[PortPlan, ...] = ()
    flood: tuple[str, ...] = ()  # remote tunnel addresses BUM traffic goes to
    pinned: tuple[tuple[str, str], ...] = ()  # (mac, remote) pushed into the VXLAN device's fdb
    dhcp: Dhcp | None = None

    @property
    def members(self) -> tuple[str, ...]:
        """The devices the data plane itself puts on the bridge (the guests' taps come and go)."""
        names = [self.vxlan or self.uplink]
        if self.dhcp is not None:
            names.append(self.dhcp.veth)
        return tuple(n for n in names if n)


@dataclass(frozen=True)
class HostState:
    networks: tuple[NetworkState, ...] = ()
    ruleset: str = ""  # nftables, both tables; "" when the host has no network
    devices: dict[str, str] = field(default_factory=dict)  # tap device -> its bridge

    def network(self, network_id: str) -> NetworkState | None:
        return next((n for n in self.networks if n.network_id == network_id), None)


@dataclass(frozen=True)
class Settings:
    """The host configuration the desired state depends on."""

    tunnel_address: str = ""
    vxlan_port: int = 4789
    namespace: str = ""
    physical_networks: dict[str, str] = field(default_factory=dict)
    bridges: frozenset[str] = frozenset()  # which physical network devices are bridges already
    table: str = "compute_dataplane"


def desired_state(plan: HostNetworkPlan, settings: Settings) -> HostState:
    networks = tuple(network_state(n, settings) for n in sorted(plan.networks, key=lambda n: n.network_id))
    bridges = [n.bridge for n in networks if n.owns_bridge]
    if len(set(bridges)) != len(bridges):
        raise PlanError("two networks' ids begin with the same 11 characters: their devices' names would clash")
    devices: dict[str, str] = {}
    for network in networks:
        for port in network.ports:
            devices[port.device] = network.bridge
    return HostState(networks=networks, ruleset=ruleset(networks, settings.table), devices=devices)


def network_state(plan: NetworkPlan, settings: Settings) -> NetworkState:
    if not _NETWORK_ID_RE.match(plan.network_id):
        raise PlanError(f"network id {plan.network_id!r} is not a UUID")
    ports = tuple(p for p in plan.ports if _TAP_RE.match(p.device) and _MAC_RE.match(p.mac))
    common = {
        "network_id": plan.network_id,
        "network_type": plan.network_type,
        "mtu": int(plan.mtu),
        "ports": tuple(sorted(ports, key=lambda p: p.device)),
        "dhcp": dhcp_state(plan, settings.namespace),
    }
    if plan.network_type == "vxlan":
        if not settings.tunnel_address:
            raise PlanError(f"network {plan.network_id} is a VXLAN network, and this host has no tunnel address")
        vni = int(plan.segmentation_id or 0)
        if not 1 <= vni <= 2**24 - 1:
            raise PlanError(f"network {plan.network_id} has no valid VNI ({plan.segmentation_id!r})")
        remotes = tuple(sorted({_ipv4(r) for r in plan.remotes if r and r != settings.tunnel_address}))
        pinned = tuple(
            sorted(
                {
                    (n.mac.lower(), _ipv4(n.remote))
                    for n in plan.neighbours
                    if _MAC_RE.match(n.mac) and n.remote and n.remote != settings.tunnel_address
                }
            )
        )
        return NetworkState(
            bridge=bridge_name(plan.network_id),
            owns_bridge=True,
            vxlan=vxlan_name(vni),
            vni=vni,
            flood=remotes,
            pinned=pinned,
            **common,
        )
    if plan.network_type == "flat":
        device = settings.physical_networks.get(plan.physical_network or "")
        if device is None:
            raise PlanError(
                f"network {plan.network_id} is on physical network {plan.physical_network!r}, which this host "
                "does not carry (COMPUTE_PHYSICAL_NETWORKS)"
            )
        if device in settings.bridges:
            return NetworkState(bridge=device, owns_bridge=False, **common)
        return NetworkState(bridge=bridge_name(plan.network_id), owns_bridge=True, uplink=device, **common)
    raise PlanError(f"network {plan.network_id} has type {plan.network_type!r}; this host knows vxlan and flat")


def dhcp_state(plan: NetworkPlan, namespace: str) -> Dhcp | None:
    subnets = [s for s in plan.subnets if s.enable_dhcp and _ipv4_network(s.cidr) is not None]
    if not subnets or not _MAC_RE.match(plan.dhcp_mac or ""):
        return None
    addresses = []
    served = []
    for subnet in subnets:
        net = _ipv4_network(subnet.cidr)
        mine = [ip for ip in plan.dhcp_ips if _in(ip, net)]
        if mine:
            addresses.append(f"{mine[0]}/{net.prefixlen}")
            served.append((subnet, net, mine[0]))
    if not served:
        return None
    args = [
        "--no-hosts",
        "--no-resolv",
        "--conf-file=/dev/null",
        "--bind-interfaces",
        f"--interface={DHCP_INSIDE}",
        "--except-interface=lo",
        "--leasefile-ro",
        "--dhcp-authoritative",
        "--domain-needed",
        "--bogus-priv",
        "--local-ttl=30",
        f"--dhcp-lease-max={max(16, len(plan.leases) * 2)}",
    ]
    for subnet, net, _address in served:
        args.append(f"--dhcp-range=set:{_tag(subnet)},{net.network_address},static,{net.netmask},{DHCP_LEASE_SECONDS}s")
    mine = {p.port_id for p in plan.ports}
    hosts = []
    names = []
    for port in sorted(plan.leases, key=lambda p: p.port_id):
        if not _MAC_RE.match(port.mac):
            continue
        name = hostname(port)
        for ip in port.ips:
            if not any(_in(ip, net) for _s, net, _a in served):
                continue
            names.append(f"{ip}\t{name}")
            if port.port_id in mine:
                hosts.append(f"{port.mac.lower()},{name},{ip}")
    options = []
    for subnet, net, address in served:
        tag = f"tag:{_tag(subnet)}"
        gateway = subnet.gateway_ip if subnet.gateway_ip and _in(subnet.gateway_ip, net) else ""
        options.append(f"{tag},option:router{',' + gateway if gateway else ''}")
        servers = [address] + [s for s in subnet.dns_nameservers if _ipv4_or_none(s)]
        options.append(f"{tag},option:dns-server,{','.join(servers)}")
        routes = _routes(subnet, gateway)
        if routes:
            # A client that takes classless routes ignores the router option: the default route goes in too.
            options.append(f"{tag},option:classless-static-route,{','.join(routes)}")
        options.append(f"{tag},option:mtu,{int(plan.mtu)}")
    return Dhcp(
        namespace=dhcp_namespace_name(namespace, plan.network_id),
        veth=dhcp_veth_name(plan.network_id),
        mac=plan.dhcp_mac.lower(),
        addresses=tuple(addresses),
        mtu=int(plan.mtu),
        args=tuple(args),
        hosts="".join(line + "\n" for line in hosts),
        options="".join(line + "\n" for line in options),
        addn_hosts="".join(line + "\n" for line in names),
    )


def ruleset(networks: tuple[NetworkState, ...], table: str) -> str:
    """The data plane's two nftables tables, as one ``nft -f`` input that replaces them atomically.

    inet: guests reach nothing on the host (replies to what the host opened pass), and nothing is routed
    between a guest bridge and any other interface. bridge: a port's frames carry its own MAC and
    addresses (with port security), and the DHCP port's frames never leave the host (every host serves
    its own guests from the same address)."""
    if not networks:
        return ""
    guest_ifaces = sorted(
        {n.bridge for n in networks}
        | {p.device for n in networks for p in n.ports}
        | {n.vxlan for n in networks if n.vxlan}
    )
    inet = [
        f"table inet {table} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f"    iifname {_set(guest_ifaces)} ct state established,related accept",
        f"    iifname {_set(guest_ifaces)} drop",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    # Bridged traffic (br_netfilter) comes in and goes out on the same bridge: that stays; routed does not.
    for bridge in sorted({n.bridge for n in networks}):
        inet.append(f'    iifname "{bridge}" oifname != "{bridge}" drop')
        inet.append(f'    oifname "{bridge}" iifname != "{bridge}" drop')
    filtered = [p for n in networks for p in n.ports if p.filtered and p.port_security_enabled]
    filtered.sort(key=lambda p: p.device)
    if filtered:
        # Security groups: the bridge table marks a frame with the filtered port it comes from (low half)
        # and goes to (high half); here, where conntrack sees bridged traffic, each port's chains judge it.
        out_map = ", ".join(f"{i} : jump {_sg_chain('out', i)}" for i, _p in enumerate(filtered, 1))
        in_map = ", ".join(f"{i << 16:#x} : jump {_sg_chain('in', i)}" for i, _p in enumerate(filtered, 1))
        inet.append(f"    meta mark and 0xffff vmap {{ {out_map} }}")
        inet.append(f"    meta mark and 0xffff0000 vmap {{ {in_map} }}")
    inet.append("  }")
    for index, port in enumerate(filtered, 1):
        inet += _port_chains(index, port)
    inet += ["}"]
    bridge_rules = [
        f"table bridge {table} {{",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    for network in networks:
        for port in network.ports:
            if not port.port_security_enabled:
                continue
            bridge_rules.append(f'    iifname "{port.device}" ether saddr != {port.mac.lower()} drop')
            v4 = sorted({ip for ip in port.ips if _ipv4_or_none(ip)})
            allowed = _set(["0.0.0.0", *v4])  # noqa: S104 - 0.0.0.0: a DHCP client before it has its address
            bridge_rules.append(f'    iifname "{port.device}" ether type ip ip saddr != {allowed} drop')
            bridge_rules.append(f'    iifname "{port.device}" ether type arp arp saddr ip != {allowed} drop')
    for index, port in enumerate(filtered, 1):
        bridge_rules.append(f'    iifname "{port.device}" meta mark set meta mark and 0xffff0000 or {index:#x}')
        bridge_rules.append(f'    oifname "{port.device}" meta mark set meta mark and 0xffff or {index << 16:#x}')
    # The DHCP legs and the guests' taps are this host's own ports; anything else on a bridge (a VXLAN
    # device, a physical interface, an operator's devices) leads to other hosts.
    local = sorted({n.dhcp.veth for n in networks if n.dhcp} | {p.device for n in networks for p in n.ports})
    if local:
        ours = _set(local)
        for mac in sorted({n.dhcp.mac for n in networks if n.dhcp}):
            bridge_rules.append(f"    ether saddr {mac} oifname != {ours} drop")
            bridge_rules.append(f"    ether daddr {mac} iifname != {ours} drop")
        bridge_rules.append(f"    iifname {ours} oifname != {ours} udp dport {{ 67, 68 }} drop")
        bridge_rules.append(f"    iifname != {ours} oifname {ours} udp dport {{ 67, 68 }} drop")
    bridge_rules += ["  }", "}"]
    return "\n".join(inet + bridge_rules) + "\n"


def _sg_chain(direction: str, index: int) -> str:
    return f"sg-{direction}-{index}"


_PORT_PROTOCOLS = {6, 17, 33, 132, 136}


def _port_chains(index: int, port: PortPlan) -> list[str]:
    """A filtered port's two chains: what leaves it (egress) and what reaches it (ingress). Replies to
    what was let through pass (stateful); DHCP with the host's server passes, a guest's own DHCP server
    does not; then the port's rules; then nothing."""
    chains = []
    for direction, chain in (("egress", "out"), ("ingress", "in")):
        lines = [
            f"  chain {_sg_chain(chain, index)} {{",
            "    ct state invalid drop",
            "    ct state established,related return",
        ]
        if direction == "egress":
            lines.append("    meta nfproto ipv4 udp sport 68 udp dport 67 return")
            lines.append("    udp sport 67 udp dport 68 drop")
        else:
            lines.append("    meta nfproto ipv4 udp sport 67 udp dport 68 return")
        for rule in port.rules:
            if rule.direction == direction:
                match = _rule_match(rule)
                if match is not None:
                    lines.append(f"    {match} return" if match else "    return")
        lines += ["    drop", "  }"]
        chains += lines
    return chains


def _rule_match(rule) -> str | None:
    """The nft match of one compiled rule ("" matches everything), or None when it can match nothing."""
    v6 = rule.ethertype == "IPv6"
    parts = ["meta nfproto ipv6" if v6 else "meta nfproto ipv4"]
    if rule.remote is not None:
        nets = []
        for prefix in rule.remote:
            try:
                net = ipaddress.ip_network(prefix, strict=False)
            except ValueError:
                continue
            if (net.version == 6) == v6:
                nets.append(str(net))
        if not nets:
            return None
        field = "saddr" if rule.direction == "ingress" else "daddr"
        parts.append(f"{'ip6' if v6 else 'ip'} {field} {{ {', '.join(sorted(set(nets)))} }}")
    protocol = rule.protocol
    if protocol is not None:
        protocol = int(protocol)
        if not 0 <= protocol <= 255:
            return None
        parts.append(f"meta l4proto {protocol}")
        low, high = rule.port_min, rule.port_max
        if protocol in _PORT_PROTOCOLS and low is not None:
            high = low if high is None else high
            parts.append(f"th dport {int(low)}-{int(high)}" if high != low else f"th dport {int(low)}")
        elif protocol in (1, 58) and low is not None:
            icmp = "icmpv6" if protocol == 58 else "icmp"
            parts.append(f"{icmp} type {int(low)}")
            if high is not None:
                parts.append(f"{icmp} code {int(high)}")
    return " ".join(parts)


def hostname(port: PortPlan) -> str:
    """A DNS label for the port: its hostname made safe, else host-<ip>."""
    name = re.sub(r"[^a-z0-9-]", "-", (port.hostname or "").lower()).strip("-")[:63]
    if not name and port.ips:
        name = "host-" + re.sub(r"[^a-z0-9]", "-", port.ips[0].lower())
    return name or "host-" + port.port_id[:8]


def _routes(subnet: SubnetPlan, gateway: str) -> list[str]:
    routes = []
    for route in subnet.host_routes:
        destination, nexthop = route.get("destination", ""), route.get("nexthop", "")
        try:
            dest = ipaddress.IPv4Network(destination, strict=False)
            ipaddress.IPv4Address(nexthop)
        except ValueError:
            continue
        routes.append(f"{dest},{nexthop}")
    if routes and gateway:
        routes.append(f"0.0.0.0/0,{gateway}")
    return routes


def _tag(subnet: SubnetPlan) -> str:
    return "subnet-" + re.sub(r"[^A-Za-z0-9-]", "", subnet.subnet_id)


def _set(items: list[str]) -> str:
    quoted = [f'"{i}"' if not _looks_numeric(i) else i for i in items]
    return "{ " + ", ".join(quoted) + " }"


def _looks_numeric(item: str) -> bool:
    return _ipv4_or_none(item) is not None


def _ipv4(value: str) -> str:
    return str(ipaddress.IPv4Address(value))


def _ipv4_or_none(value: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def _ipv4_network(cidr: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(cidr, strict=False)
    except ValueError:
        return None


def _in(ip: str, net: ipaddress.IPv4Network) -> bool:
    address = _ipv4_or_none(ip)
    return address is not None and address in net


_NETWORK_ID_RE = re.compile(r"^[0-9a-fA-F-]{32,36}$")
_TAP_RE = re.compile(r"^tap[0-9a-f-]{1,12}$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
