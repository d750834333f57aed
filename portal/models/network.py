"""The network controller's data: networks, their subnets, ports and the addresses ports hold.

Shaped after the OpenStack networking API v2.0 (what ``portal.api.network`` shows), owned here as the
rest of the cloud's data is; each host's data plane is programmed from these rows (``network_sync``).
"""

from __future__ import annotations

import ipaddress
import uuid

from django.db import models

from .host import ComputeHost
from .identity import Project


class Network(models.Model):
    class Type(models.TextChoices):
        FLAT = "flat"
        VXLAN = "vxlan"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.PROTECT, related_name="networks")
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.CharField(max_length=255, blank=True, default="")
    admin_state_up = models.BooleanField(default=True)
    shared = models.BooleanField(default=False)
    external = models.BooleanField(default=False)  # router:external
    network_type = models.CharField(max_length=16, choices=Type.choices, default=Type.VXLAN)
    physical_network = models.CharField(max_length=64, null=True, blank=True)
    segmentation_id = models.PositiveIntegerField(null=True, blank=True)  # the VNI of a vxlan network
    mtu = models.PositiveIntegerField(default=1450)
    port_security_enabled = models.BooleanField(default=True)
    # The project's network that ``networks: auto`` made (Nova's get-me-a-network); one per project.
    auto_allocated = models.BooleanField(default=False)
    revision_number = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["segmentation_id"], condition=models.Q(network_type="vxlan"), name="one_network_per_vni"
            ),
            models.UniqueConstraint(
                fields=["physical_network"],
                condition=models.Q(network_type="flat"),
                name="one_flat_network_per_physnet",
            ),
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(auto_allocated=True), name="one_auto_network_per_project"
            ),
        ]

    def __str__(self) -> str:
        return self.name or str(self.id)


class Subnet(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    network = models.ForeignKey(Network, on_delete=models.CASCADE, related_name="subnets")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.PROTECT, related_name="subnets")
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.CharField(max_length=255, blank=True, default="")
    ip_version = models.PositiveSmallIntegerField(default=4)
    cidr = models.CharField(max_length=64)  # normalised: "10.0.0.0/24"
    gateway_ip = models.GenericIPAddressField(null=True, blank=True)
    allocation_pools = models.JSONField(default=list, blank=True)  # [{"start": ..., "end": ...}]
    dns_nameservers = models.JSONField(default=list, blank=True)  # ["10.0.0.2", ...]
    host_routes = models.JSONField(default=list, blank=True)  # [{"destination": ..., "nexthop": ...}]
    enable_dhcp = models.BooleanField(default=True)
    revision_number = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.name or self.cidr


class Port(models.Model):
    class Status(models.TextChoices):
        DOWN = "DOWN"
        BUILD = "BUILD"
        ACTIVE = "ACTIVE"

    # device_owner values the cloud itself sets
    OWNER_COMPUTE = "compute:"  # + availability zone, as Nova sets it: "compute:nova"
    OWNER_DHCP = "network:dhcp"
    OWNER_ROUTER_INTERFACE = "network:router_interface"
    OWNER_ROUTER_GATEWAY = "network:router_gateway"
    OWNER_FLOATING_IP = "network:floatingip"
    # Ports the network controller itself makes and plugs: never a guest's tap.
    OWNERS_NETWORK = (OWNER_DHCP, OWNER_ROUTER_INTERFACE, OWNER_ROUTER_GATEWAY, OWNER_FLOATING_IP)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="ports")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.PROTECT, related_name="ports")
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.CharField(max_length=255, blank=True, default="")
    mac_address = models.CharField(max_length=17)
    admin_state_up = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DOWN)
    device_id = models.CharField(max_length=255, blank=True, default="")
    device_owner = models.CharField(max_length=255, blank=True, default="")
    port_security_enabled = models.BooleanField(default=True)
    # binding:host_id — the host whose data plane plugs the port; None while unbound.
    host = models.ForeignKey(ComputeHost, null=True, blank=True, on_delete=models.SET_NULL, related_name="ports")
    vif_type = models.CharField(max_length=32, default="unbound")  # binding:vif_type
    # The instance the cloud made this port for (deleted with it); a port the user made stays, unbound.
    auto_delete = models.BooleanField(default=False)
    security_groups = models.ManyToManyField("SecurityGroup", blank=True, related_name="ports")
    revision_number = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["network", "mac_address"], name="one_mac_per_network")]
        indexes = [models.Index(fields=["device_id"]), models.Index(fields=["host", "network"])]

    def __str__(self) -> str:
        return self.name or str(self.id)

    @property
    def device_name(self) -> str:
        """The host-side device (a tap) of this port, as Neutron names it: ``tap`` + 11 characters of the id."""
        return f"tap{str(self.id)[:11]}"


class IPAllocation(models.Model):
    """One address a port holds on one of its network's subnets. Unique per subnet: an address is never
    handed out twice, whatever runs at the same time."""

    port = models.ForeignKey(Port, on_delete=models.CASCADE, related_name="fixed_ips")
    subnet = models.ForeignKey(Subnet, on_delete=models.PROTECT, related_name="allocations")
    ip_address = models.GenericIPAddressField()

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["subnet", "ip_address"], name="one_port_per_address")]

    def __str__(self) -> str:
        return self.ip_address


class HostNetworkState(models.Model):
    """What the control plane last sent a host for its data plane, and what the host last said it applied.

    ``generation`` grows with every change that touches the host; a host's report names the generation it
    applied, so an old report never overwrites a newer one.
    """

    host = models.OneToOneField(ComputeHost, on_delete=models.CASCADE, related_name="network_state")
    generation = models.PositiveBigIntegerField(default=0)
    applied_generation = models.PositiveBigIntegerField(default=0)
    applied_at = models.DateTimeField(null=True, blank=True)
    drift = models.JSONField(default=list, blank=True)  # what the host last found wrong and mended
    error = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"{self.host_id}@{self.generation}"


class SecurityGroup(models.Model):
    """A project's named set of rules for what may reach and leave its ports. Each project has one
    ``default`` group (``is_default``), made the first time the project needs it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="security_groups")
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.CharField(max_length=255, blank=True, default="")
    stateful = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False)
    revision_number = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(is_default=True), name="one_default_group_per_project"
            )
        ]

    def __str__(self) -> str:
        return self.name or str(self.id)


class SecurityGroupRule(models.Model):
    """One thing a group lets through: traffic in one direction, of one family and protocol (None: any),
    ports or ICMP type/code, from or to an address range or the members of a group (None: anywhere)."""

    class Direction(models.TextChoices):
        INGRESS = "ingress"
        EGRESS = "egress"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    security_group = models.ForeignKey(SecurityGroup, on_delete=models.CASCADE, related_name="rules")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="security_group_rules")
    direction = models.CharField(max_length=8, choices=Direction.choices)
    ethertype = models.CharField(max_length=4, default="IPv4")
    protocol = models.CharField(max_length=16, null=True, blank=True)  # a name or a number, as given
    port_range_min = models.PositiveIntegerField(null=True, blank=True)
    port_range_max = models.PositiveIntegerField(null=True, blank=True)
    # As given (an address with its prefix length, 10.2.3.124/24): what the API shows. What it matches is
    # ``normalized_cidr``, its network.
    remote_ip_prefix = models.CharField(max_length=64, null=True, blank=True)
    remote_group = models.ForeignKey(
        SecurityGroup, null=True, blank=True, on_delete=models.CASCADE, related_name="remote_rules"
    )
    description = models.CharField(max_length=255, blank=True, default="")
    revision_number = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.direction} {self.ethertype} {self.protocol or 'any'}"

    @property
    def normalized_cidr(self) -> str | None:
        if not self.remote_ip_prefix:
            return None
        return str(ipaddress.ip_network(self.remote_ip_prefix, strict=False))


class Router(models.Model):
    """A project's router: it routes between the subnets it has interfaces on and, with a gateway on an
    external network, to the outside (translating them, when ``enable_snat``). Its ports are ordinary
    ports (``network:router_interface``, ``network:router_gateway``) bound to ``host``, the one host whose
    data plane runs it, chosen by the control plane and moved when that host dies."""

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE"
        DOWN = "DOWN"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="routers")
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.CharField(max_length=255, blank=True, default="")
    admin_state_up = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    external_network = models.ForeignKey(
        Network, null=True, blank=True, on_delete=models.PROTECT, related_name="gateway_routers"
    )
    enable_snat = models.BooleanField(default=True)
    host = models.ForeignKey(ComputeHost, null=True, blank=True, on_delete=models.SET_NULL, related_name="routers")
    revision_number = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.name or str(self.id)


class FloatingIP(models.Model):
    """An address of an external network a project holds (through its own port there, unbound), and,
    when associated, the internal port and fixed address it stands for, through ``router``."""

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE"
        DOWN = "DOWN"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="floating_ips")
    floating_network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="floating_ips")
    floating_port = models.OneToOneField(Port, on_delete=models.PROTECT, related_name="floating_ip")
    floating_ip_address = models.GenericIPAddressField()
    port = models.ForeignKey(Port, null=True, blank=True, on_delete=models.SET_NULL, related_name="floating_ips")
    fixed_ip_address = models.GenericIPAddressField(null=True, blank=True)
    router = models.ForeignKey(Router, null=True, blank=True, on_delete=models.SET_NULL, related_name="floating_ips")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DOWN)
    description = models.CharField(max_length=255, blank=True, default="")
    revision_number = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["port", "fixed_ip_address"],
                condition=models.Q(port__isnull=False),
                name="one_floating_ip_per_fixed_ip",
            )
        ]

    def __str__(self) -> str:
        return self.floating_ip_address
