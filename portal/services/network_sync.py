"""Each host's data plane, as the control plane wants it, and what hosts say they made of it.

A host is never sent a change: it is sent everything it should have (``plan_for``), whenever anything it
has changes, and reconciles to that. So a lost or repeated message costs nothing: the next plan, or the
heartbeat that shows the host behind (``host_behind``), repairs it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import defaultdict
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from compute_tasks import rpc
from portal.ids import is_uuid
from portal.models import (
    ComputeHost,
    FloatingIP,
    HostNetworkState,
    IPAllocation,
    Migration,
    Network,
    Port,
    Router,
    SecurityGroupRule,
)

from .ip_protocols import protocol_number

log = logging.getLogger(__name__)


def network_changed(network_id) -> None:
    """Everything about a network (its subnets, ports, their bindings) may have changed: every host with
    ports on it gets its plan again once the transaction commits."""
    hosts = Port.objects.filter(network_id=network_id, host__isnull=False).values_list("host_id", flat=True)
    hosts_changed(set(hosts))


def hosts_changed(host_ids: Iterable[int]) -> None:
    """The hosts' plans changed: each gets a new generation now and its plan once the transaction commits
    (built then, so it holds what was committed)."""
    host_ids = sorted({h for h in host_ids if h is not None})
    if not host_ids:
        return
    for host_id in host_ids:
        HostNetworkState.objects.get_or_create(host_id=host_id)
    HostNetworkState.objects.filter(host_id__in=host_ids).update(generation=F("generation") + 1)
    transaction.on_commit(lambda: send_plans(host_ids))


def send_plans(host_ids: Iterable[int]) -> None:
    # A host deleted just now is told too: what it ran (a router) is gone from its plan, so it stops.
    for host in ComputeHost._base_manager.filter(pk__in=list(host_ids)):
        rpc.apply_network_state(host.name, plan_for(host))


def host_behind(host: ComputeHost, applied_generation: int) -> None:
    """A heartbeat said which plan the host runs: one that is behind (it missed a message, or came back
    from a restart with an older one) is sent the current plan again; so is one whose report of the plan
    it runs never arrived (its ports' states would stay as they were): applying it again reports again."""
    state = HostNetworkState.objects.filter(host=host).values_list("generation", "applied_generation").first()
    resend_if_behind(host.pk, state, applied_generation)


def resend_if_behind(host_id: int, state: tuple[int, int] | None, applied_generation: int) -> None:
    """``host_behind`` for a host whose network state (generation, applied generation) was read already."""
    if state is not None and (applied_generation != state[0] or state[1] < applied_generation):
        host = ComputeHost.objects.get(pk=host_id)
        rpc.apply_network_state(host.name, plan_for(host))


def plan_for(host: ComputeHost) -> rpc.HostNetworkPlan:
    """Every network the host has ports on (its guests', its routers'), as the host must have it, and
    the routers it runs."""
    state, _ = HostNetworkState.objects.get_or_create(host=host)
    # A server moving to or from the host has its ports here too, until the move ends.
    moving = {
        str(u)
        for u in Migration.objects.filter(status__in=Migration.ACTIVE_STATUSES)
        .filter(Q(source_host=host) | Q(dest_host=host))
        .values_list("instance__uuid", flat=True)
    }
    here = Port.objects.filter(Q(host=host) | Q(device_id__in=moving)).exclude(device_owner=Port.OWNER_DHCP)
    network_ids = set(here.values_list("network_id", flat=True))
    networks = Network.objects.filter(pk__in=network_ids).prefetch_related("subnets")
    ports_by_network: dict = defaultdict(list)
    for port in (
        Port.objects.filter(network_id__in=network_ids)
        .select_related("host")
        .prefetch_related("fixed_ips")
        .order_by("created_at", "id")
    ):
        ports_by_network[port.network_id].append(port)
    mine = [p for ps in ports_by_network.values() for p in ps if p.host_id == host.pk or p.device_id in moving]
    firewalls = port_firewalls(mine)
    plans = [_network_plan(host, network, ports_by_network[network.pk], moving, firewalls) for network in networks]
    return rpc.HostNetworkPlan(
        host=host.name, generation=state.generation, networks=plans, routers=router_plans(host, network_ids)
    )


def router_plans(host: ComputeHost, network_ids: set) -> list[rpc.RouterPlan]:
    """The routers bound to the host, each with its legs on the networks the plan carries."""
    routers = {str(r.pk): r for r in Router.objects.filter(host=host, admin_state_up=True)}
    if not routers:
        return []
    legs: dict = defaultdict(list)
    gateways: dict = {}
    for port in (
        Port.objects.filter(
            device_id__in=list(routers),
            device_owner__in=(Port.OWNER_ROUTER_INTERFACE, Port.OWNER_ROUTER_GATEWAY),
            host=host,
            network_id__in=network_ids,
        )
        .select_related("network")
        .prefetch_related("fixed_ips__subnet")
        .order_by("created_at", "id")
    ):
        leg = rpc.RouterLeg(
            port_id=str(port.pk),
            network_id=str(port.network_id),
            mac=port.mac_address,
            addresses=[f"{a.ip_address}/{ipaddress.ip_network(a.subnet.cidr).prefixlen}" for a in port.fixed_ips.all()],
            mtu=port.network.mtu,
        )
        if port.device_owner == Port.OWNER_ROUTER_GATEWAY:
            nexthop = next((a.subnet.gateway_ip for a in port.fixed_ips.all() if a.subnet.gateway_ip), "")
            gateways[port.device_id] = (leg, nexthop or "")
        else:
            legs[port.device_id].append(leg)
    floating: dict = defaultdict(list)
    for router_id, address, fixed in FloatingIP.objects.filter(
        router_id__in=list(routers), port__isnull=False, fixed_ip_address__isnull=False
    ).values_list("router_id", "floating_ip_address", "fixed_ip_address"):
        floating[str(router_id)].append(rpc.FloatingPlan(floating_ip=address, fixed_ip=fixed))
    plans = []
    for router_id, router in sorted(routers.items()):
        gateway, nexthop = gateways.get(router_id, (None, ""))
        if gateway is None and not legs.get(router_id):
            continue
        plans.append(
            rpc.RouterPlan(
                router_id=router_id,
                interfaces=legs.get(router_id, []),
                gateway=gateway,
                gateway_nexthop=nexthop,
                snat=router.enable_snat,
                floating=sorted(floating.get(router_id, []), key=lambda f: f.floating_ip) if gateway else [],
            )
        )
    return plans


def _network_plan(
    host: ComputeHost, network: Network, ports: list[Port], moving: set[str], firewalls: dict
) -> rpc.NetworkPlan:
    dhcp = next((p for p in ports if p.device_owner == Port.OWNER_DHCP), None)
    guests = [p for p in ports if p.device_owner not in Port.OWNERS_NETWORK]
    # Every device on the network somewhere else: guests and routers (a DHCP port is on every host).
    plugged = [p for p in ports if p.device_owner not in (Port.OWNER_DHCP, Port.OWNER_FLOATING_IP)]
    elsewhere = [p for p in plugged if p.host and p.host_id != host.pk and p.host.tunnel_address]
    remotes = sorted({p.host.tunnel_address for p in elsewhere})
    neighbours = [rpc.Neighbour(mac=p.mac_address, ip=_first_ip(p), remote=p.host.tunnel_address) for p in elsewhere]
    return rpc.NetworkPlan(
        network_id=str(network.pk),
        network_type=network.network_type,
        mtu=network.mtu,
        segmentation_id=network.segmentation_id,
        physical_network=network.physical_network,
        subnets=[
            rpc.SubnetPlan(
                subnet_id=str(subnet.pk),
                cidr=subnet.cidr,
                gateway_ip=subnet.gateway_ip,
                dns_nameservers=list(subnet.dns_nameservers),
                host_routes=list(subnet.host_routes),
                enable_dhcp=subnet.enable_dhcp,
            )
            for subnet in network.subnets.all()
        ],
        ports=[_port_plan(p, firewalls.get(p.pk, [])) for p in guests if p.host_id == host.pk or p.device_id in moving],
        dhcp_mac=dhcp.mac_address if dhcp else "",
        dhcp_ips=[a.ip_address for a in dhcp.fixed_ips.all()] if dhcp else [],
        leases=[_port_plan(p) for p in guests],
        remotes=remotes if network.network_type == Network.Type.VXLAN else [],
        neighbours=neighbours if network.network_type == Network.Type.VXLAN else [],
    )


def _port_plan(port: Port, rules: list[rpc.RulePlan] | None = None) -> rpc.PortPlan:
    return rpc.PortPlan(
        filtered=rules is not None and port.port_security_enabled,
        rules=list(rules or []) if port.port_security_enabled else [],
        port_id=str(port.pk),
        mac=port.mac_address,
        device=port.device_name,
        instance_uuid=port.device_id if port.device_owner.startswith(Port.OWNER_COMPUTE) else "",
        ips=[a.ip_address for a in port.fixed_ips.all()],
        hostname=_hostname(port),
        admin_state_up=port.admin_state_up,
        port_security_enabled=port.port_security_enabled,
    )


def port_firewalls(ports: list[Port]) -> dict:
    """Each port's security group rules, compiled for its host: port id -> [RulePlan]. A remote group is
    expanded to the addresses of the group's members at this moment (a membership change replans)."""
    if not ports:
        return {}
    through = Port.security_groups.through
    groups_of: dict = defaultdict(list)
    for port_id, group_id in through.objects.filter(port_id__in=[p.pk for p in ports]).values_list(
        "port_id", "securitygroup_id"
    ):
        groups_of[port_id].append(group_id)
    group_ids = {g for gs in groups_of.values() for g in gs}
    rules_of: dict = defaultdict(list)
    for rule in SecurityGroupRule.objects.filter(security_group_id__in=group_ids).order_by("created_at", "id"):
        rules_of[rule.security_group_id].append(rule)
    remote_ids = {r.remote_group_id for rs in rules_of.values() for r in rs if r.remote_group_id}
    members: dict = defaultdict(set)
    for group_id, ip in IPAllocation.objects.filter(port__security_groups__in=remote_ids).values_list(
        "port__security_groups", "ip_address"
    ):
        if group_id in remote_ids:
            members[group_id].add(ip)
    return {
        port.pk: compile_rules([r for g in groups_of.get(port.pk, []) for r in rules_of[g]], members) for port in ports
    }


def compile_rules(rules, members: dict) -> list[rpc.RulePlan]:
    """Rules as a host enforces them: protocol numbers, remote groups turned into their members' addresses
    of the rule's family (a group with none: the rule matches nothing and is left out), duplicates once."""
    compiled: list[rpc.RulePlan] = []
    for rule in rules:
        version = 4 if rule.ethertype == "IPv4" else 6
        if rule.remote_group_id:
            remote = sorted(
                f"{ip}/{32 if version == 4 else 128}"
                for ip in members.get(rule.remote_group_id, ())
                if ipaddress.ip_address(ip).version == version
            )
            if not remote:
                continue
        else:
            remote = [rule.normalized_cidr] if rule.remote_ip_prefix else None
        plan = rpc.RulePlan(
            direction=rule.direction,
            ethertype=rule.ethertype,
            protocol=protocol_number(rule.protocol),
            port_min=rule.port_range_min,
            port_max=rule.port_range_max,
            remote=remote,
        )
        if plan not in compiled:
            compiled.append(plan)
    return compiled


def _first_ip(port: Port) -> str:
    ips = [a.ip_address for a in port.fixed_ips.all()]
    return ips[0] if ips else ""


def _hostname(port: Port) -> str:
    """The name DNS on the network answers for the port: its server's hostname, else ``host-<ip>``."""
    name = getattr(port, "dns_hostname", "")
    if name:
        return name
    ip = _first_ip(port)
    return f"host-{ip.replace('.', '-')}" if ip else ""


@transaction.atomic
def network_state_applied(report: rpc.NetworkStateApplied) -> None:
    """A host applied a plan (or checked on its own): its ports whose devices are plugged are ACTIVE, its
    other bound ports DOWN. A host is believed about ports bound to it and nothing else.

    Ports are written before the host's network state is locked, the order every change to a network
    takes (its ports, then ``hosts_changed``): the other order deadlocks against them."""
    host = ComputeHost.objects.filter(name=report.host).first()
    if host is None:
        return
    state, _ = HostNetworkState.objects.get_or_create(host=host)
    if report.generation > state.generation:
        # A plan this control plane never issued (its database started over): the host gets the current
        # one, and what it reports of that counts. Recorded as applied, it would hide every later report.
        transaction.on_commit(lambda: rpc.apply_network_state(host.name, plan_for(host)))
        return
    if report.generation < state.applied_generation:
        return  # overtaken by a newer report
    _ports_as_reported(host, report)
    state = HostNetworkState.objects.select_for_update().get(pk=state.pk)
    if report.generation < state.applied_generation:
        transaction.set_rollback(True)  # a newer report was applied meanwhile: what this one wrote goes
        return
    state.applied_generation = report.generation
    state.applied_at = timezone.now()
    if report.drift:  # what the host last mended stays shown until it mends something again
        state.drift = list(report.drift)[:100]
    state.error = report.error[:2000]
    state.save(update_fields=["applied_generation", "applied_at", "drift", "error"])
    if report.drift:
        log.warning("host %s mended its data plane: %s", host.name, "; ".join(report.drift[:10]))


def _ports_as_reported(host: ComputeHost, report: rpc.NetworkStateApplied) -> None:
    mine = Port.objects.filter(host=host).exclude(device_owner=Port.OWNER_DHCP)
    plugged = [p for p in report.plugged_ports if is_uuid(p)]
    mine.filter(pk__in=plugged).exclude(status=Port.Status.ACTIVE).update(
        status=Port.Status.ACTIVE, revision_number=F("revision_number") + 1, updated_at=timezone.now()
    )
    mine.exclude(pk__in=plugged).exclude(status=Port.Status.DOWN).update(
        status=Port.Status.DOWN, revision_number=F("revision_number") + 1, updated_at=timezone.now()
    )
    # A network's DHCP port serves wherever the network has plugged ports: ACTIVE once one host serves it.
    serving = mine.filter(pk__in=plugged).values_list("network_id", flat=True)
    Port.objects.filter(device_owner=Port.OWNER_DHCP, network_id__in=serving).exclude(status=Port.Status.ACTIVE).update(
        status=Port.Status.ACTIVE, revision_number=F("revision_number") + 1, updated_at=timezone.now()
    )
