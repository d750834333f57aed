"""A host's network plan turned into the devices, DHCP servers and firewall rules it stands for.

Pure functions of the plan and the host's configuration, no system calls: what ``LinuxDataplane``
then makes the kernel agree with. Every name the data plane makes starts with one of its prefixes, so
it can tell its own devices from anything else on the host.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from compute_tasks.dataplane.router_state import ROUTER_VETH_PREFIX, RouterState, router_states
from compute_tasks.rpc import HostNetworkPlan, NetworkPlan, PortPlan, SubnetPlan

BRIDGE_PREFIX = "brq"  # a network's bridge: brq + 11 characters of the network id
VXLAN_PREFIX = "vxlan-"  # a network's VXLAN device: vxlan-<VNI>
DHCP_VETH_PREFIX = "dhq"  # the bridge end of a network's DHCP server's veth
DHCP_INSIDE = "ns-dhcp"  # the DHCP server's end, inside its namespace
OWNED_PREFIXES = (BRIDGE_PREFIX, VXLAN_PREFIX, DHCP_VETH_PREFIX, ROUTER_VETH_PREFIX)

DHCP_LEASE_SECONDS = 86400
UNSPECIFIED_V4 = "0.0.0.0"  # noqa: S104 - a source address, the one a DHCP client sends from
METADATA_ADDRESS = "169.254.169.254"  # the metadata proxy's, on every DHCP leg (compute_tasks.metadata_proxy)
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
    addresses: tuple[str, ...]  # "ip/prefixlen" on the inside end (the metadata address among them)
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
    problems: tuple[str, ...] = ()  # the networks (and routers' legs) of the plan this host cannot have, and why
    routers: tuple[RouterState, ...] = ()

    def network(self, network_id: str) -> NetworkState | None:
        return next((n for n in self.networks if n.network_id == network_id), None)

    @property
    def router_veths(self) -> dict[str, str]:
        """The bridge end of every router leg -> its bridge."""
        return {leg.veth: leg.bridge for router in self.routers for leg in router.legs}


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
    # A network the host cannot have is left out and said so; the others are still applied.
    states: list[NetworkState] = []
    problems: list[str] = []
    bridges: set[str] = set()
    for plan_network in sorted(plan.networks, key=lambda n: n.network_id):
        try:
            state = network_state(plan_network, settings)
            if state.owns_bridge and state.bridge in bridges:
                raise PlanError(
                    f"network {plan_network.network_id}: another network's id begins with the same 11 characters, "
                    "so their devices' names would clash"
                )
        except PlanError as exc:
            problems.append(str(exc))
            continue
        bridges.add(state.bridge)
        states.append(state)
    networks = tuple(states)
    devices: dict[str, str] = {}
    for network in networks:
        for port in network.ports:
            devices[port.device] = network.bridge
    routers, router_problems = router_states(
        plan.routers, {n.network_id: n.bridge for n in networks}, settings.namespace
    )
    router_veths = tuple(leg.veth for router in routers for leg in router.legs)
    return HostState(
        networks=networks,
        ruleset=ruleset(networks, settings.table, router_veths),
        devices=devices,
        problems=tuple(problems) + router_problems,
        routers=routers,
    )


def network_state(plan: NetworkPlan, settings: Settings) -> NetworkState:
    if not _NETWORK_ID_RE.match(plan.network_id):
        raise PlanError(f"network id {plan.network_id!r} is not a UUID")
    # A port an admin set down is not plugged: its guest is off the network until it is up again.
    ports = tuple(p for p in plan.ports if p.admin_state_up and _TAP_RE.match(p.device) and _MAC_RE.match(p.mac))
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
    addresses.append(f"{METADATA_ADDRESS}/32")
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
    ]
    # Sized by the subnets, not the ports: a port more must not change the command line (a restart).
    args.append(f"--dhcp-lease-max={sum(net.num_addresses for _s, net, _a in served)}")
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
        # The metadata service is reached through the DHCP port, router or not (Neutron's isolated metadata).
        routes = [f"{METADATA_ADDRESS}/32,{address}", *_routes(subnet, gateway)]
        # A client that takes classless routes ignores the router option: the default route goes in too.
        if gateway and not any(r.startswith("0.0.0.0/0,") for r in routes):
            routes.append(f"0.0.0.0/0,{gateway}")
        options.append(f"{tag},option:classless-static-route,{','.join(routes)}")
        options.append(f"{tag},249,{','.join(routes)}")  # the same, for clients that know only Microsoft's
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


def ruleset(networks: tuple[NetworkState, ...], table: str, router_veths: tuple[str, ...] = ()) -> str:
    """The data plane's two nftables tables, as one ``nft -f`` input that replaces them atomically.

    inet: guests reach nothing on the host (replies to what the host opened pass), and nothing is routed
    between a guest bridge and any other interface. bridge: a port's frames carry its own MAC and
    addresses (with port security), and the DHCP port's frames never leave the host (every host serves
    its own guests from the same address).

    A router's legs (``router_veths``) are on the guests' side: the host is no more reachable from them
    than from a guest. They are neither secured (a router forwards others' addresses) nor local ports
    (the DHCP server does not answer routers).

    The rules are a fixed handful; what grows with networks and ports are the elements of named sets, so
    the kernel matches in one lookup and ``nft list`` stays cheap."""
    if not networks:
        return ""
    bridges = sorted({n.bridge for n in networks})
    taps = sorted({p.device for n in networks for p in n.ports})
    guest_ifaces = sorted(set(bridges) | set(taps) | {n.vxlan for n in networks if n.vxlan} | set(router_veths))
    inet = [
        f"table inet {table} {{",
        _named_set("guest_ifaces", "ifname", [f'"{i}"' for i in guest_ifaces]),
        _named_set("guest_bridges", "ifname", [f'"{b}"' for b in bridges]),
        _named_set("same_bridge", "ifname . ifname", [f'"{b}" . "{b}"' for b in bridges]),
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        "    iifname @guest_ifaces ct state established,related accept",
        "    iifname @guest_ifaces drop",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        # Bridged traffic (br_netfilter) comes in and goes out on the same bridge: it stays; routed does not.
        "    iifname @guest_bridges iifname . oifname != @same_bridge drop",
        "    oifname @guest_bridges iifname . oifname != @same_bridge drop",
    ]
    filtered = sorted(
        (p for n in networks for p in n.ports if p.filtered and p.port_security_enabled), key=lambda p: p.device
    )
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
    inet.append("}")
    secured = [p for n in networks for p in n.ports if p.port_security_enabled]
    macs, ip4, ip6 = [], [], []
    for port in secured:
        macs.append(f'"{port.device}" . {port.mac.lower()}')
        # IPv4: its own addresses, and 0.0.0.0 for a DHCP client before it has one. IPv6: its own, the
        # unspecified address (duplicate address detection) and link-local ones (neighbour discovery).
        v4 = sorted({i for i in port.ips if _ipv4_or_none(i)})
        v6 = sorted({i for i in port.ips if _ipv6_or_none(i)})
        ip4 += [f'"{port.device}" . {ip}' for ip in [UNSPECIFIED_V4, *v4]]
        ip6 += [f'"{port.device}" . {ip}' for ip in ["::", "fe80::/10", *v6]]
    # The DHCP legs and the guests' taps are this host's own ports; anything else on a bridge (a VXLAN
    # device, a physical interface, an operator's devices) leads to other hosts.
    local = sorted({n.dhcp.veth for n in networks if n.dhcp} | set(taps))
    dhcp_macs = sorted({n.dhcp.mac for n in networks if n.dhcp})
    bridge_rules = [
        f"table bridge {table} {{",
        _named_set("secured", "ifname", sorted({f'"{p.device}"' for p in secured})),
        _named_set("port_macs", "ifname . ether_addr", macs),
        _named_set("port_ip4", "ifname . ipv4_addr", ip4),
        _named_set("port_ip6", "ifname . ipv6_addr", ip6, interval=True),
        _named_set("local_ports", "ifname", [f'"{i}"' for i in local]),
        _named_set("dhcp_macs", "ether_addr", dhcp_macs),
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        "    iifname @secured iifname . ether saddr != @port_macs drop",
        "    iifname @secured ether type ip iifname . ip saddr != @port_ip4 drop",
        "    iifname @secured ether type arp iifname . arp saddr ip != @port_ip4 drop",
        "    iifname @secured ether type ip6 iifname . ip6 saddr != @port_ip6 drop",
        "    ether saddr @dhcp_macs oifname != @local_ports drop",
        "    ether daddr @dhcp_macs iifname != @local_ports drop",
        "    iifname @local_ports oifname != @local_ports udp dport { 67, 68 } drop",
        "    iifname != @local_ports oifname @local_ports udp dport { 67, 68 } drop",
    ]
    for index, port in enumerate(filtered, 1):
        bridge_rules.append(f'    iifname "{port.device}" meta mark set meta mark and 0xffff0000 or {index:#x}')
        bridge_rules.append(f'    oifname "{port.device}" meta mark set meta mark and 0xffff or {index << 16:#x}')
    bridge_rules += ["  }", "}"]
    return "\n".join(inet + bridge_rules) + "\n"


def _named_set(name: str, type_: str, elements: list[str], *, interval: bool = False) -> str:
    flags = " flags interval;" if interval else ""
    body = f" elements = {{ {', '.join(elements)} }}" if elements else ""
    return f"  set {name} {{ type {type_};{flags}{body} }}"


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


def _ipv4(value: str) -> str:
    return str(ipaddress.IPv4Address(value))


def _ipv4_or_none(value: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def _ipv6_or_none(value: str) -> ipaddress.IPv6Address | None:
    try:
        return ipaddress.IPv6Address(value)
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
