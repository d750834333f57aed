"""The network controller for operators: provider networks (flat or VXLAN, shared, external), subnets,
ports (to look at, and delete), and what each host's data plane last applied. Every write goes through
the network services the networking API uses; their refusals are shown on the page."""

from __future__ import annotations

import ipaddress
import re

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, F, Q
from django.http import HttpResponseRedirect
from django.urls import reverse

from portal.models import HostNetworkState, Network, Port, SecurityGroup, SecurityGroupRule, Subnet
from portal.services import networks as network_services
from portal.services import ports as port_services
from portal.services import security_groups as security_group_services
from portal.services.network_errors import NetworkError

from .base import ReadOnlyAdmin, ServiceAdmin, ServiceRefusal

# The networking API's attribute names, as the services' refusals name them, and the forms' fields.
_FIELDS = {
    "provider:network_type": "network_type",
    "provider:physical_network": "physical_network",
    "provider:segmentation_id": "segmentation_id",
    "router:external": "external",
}


def network_refusal(exc: NetworkError) -> ServiceRefusal:
    return ServiceRefusal(exc.message, field=_FIELDS.get(exc.field, exc.field))


class RefusalsOnDelete:
    """A delete the service refuses (a network or subnet still in use) is a message on the object's page,
    not an error page; the bulk delete is left out, so each delete is one service call with one answer."""

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except NetworkError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            info = self.opts.app_label, self.opts.model_name
            return HttpResponseRedirect(reverse("admin:{}_{}_change".format(*info), args=[object_id]))

    def get_deleted_objects(self, objs, request):
        # The service deletes what goes with the row (a network's subnets and DHCP port) and refuses while
        # anything else holds on to it, so the collector's view of protected rows is not the question here.
        objs = list(objs)
        return [str(obj) for obj in objs], {self.opts.verbose_name_plural: len(objs)}, set(), []

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


# --- networks -----------------------------------------------------------------------------------------


class NetworkAdminForm(forms.ModelForm):
    class Meta:
        model = Network
        fields = [
            "project", "name", "description", "network_type", "physical_network", "segmentation_id", "mtu",
            "shared", "external", "admin_state_up", "port_security_enabled",
        ]  # fmt: skip
        labels = {
            "network_type": "Network type", "physical_network": "Physical network",
            "segmentation_id": "Segmentation ID (VNI)", "external": "External (router:external)",
            "mtu": "MTU",
        }  # fmt: skip
        help_texts = {
            "project": "The project that owns the network (its quota counts it).",
            "physical_network": "For a flat network: the physical network the hosts map to a bridge or interface.",
            "segmentation_id": "For a VXLAN network: left empty, the lowest free VNI of the configured range.",
            "mtu": "Left empty, the largest the network type allows.",
        }  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One network per VNI and per physical network: the service enforces these (under its lock, in the
        # networking API's words), so the form does not check the model's constraints before it.
        self.instance.validate_constraints = lambda exclude=None: None
        if "project" in self.fields:
            self.fields["project"].required = True
        if "mtu" in self.fields and self.instance._state.adding:
            # Not the model's default: the largest MTU depends on the type chosen.
            self.fields["mtu"].required = False
            self.initial.pop("mtu", None)

    def validate_unique(self):
        pass


_PROVIDER = ["project", "network_type", "physical_network", "segmentation_id"]
_NETWORK_CHANGES = {
    "name": "name",
    "description": "description",
    "mtu": "mtu",
    "shared": "shared",
    "external": "router:external",
    "admin_state_up": "admin_state_up",
    "port_security_enabled": "port_security_enabled",
}


@admin.register(Network)
class NetworkAdmin(RefusalsOnDelete, ServiceAdmin):
    """Provider attributes are fixed once a network exists (as in the networking API)."""

    form = NetworkAdminForm
    list_display = [
        "__str__", "project", "network_type", "physical_network", "segmentation_id", "shared", "external", "mtu",
        "subnet_count", "port_count",
    ]  # fmt: skip
    list_filter = ["network_type", "shared", "external"]
    list_select_related = ["project"]
    search_fields = ["name", "id", "project__name", "physical_network"]
    autocomplete_fields = ["project"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                subnets_n=Count("subnets", distinct=True),
                ports_n=Count("ports", filter=~Q(ports__device_owner=Port.OWNER_DHCP), distinct=True),
            )
        )

    @admin.display(description="Subnets", ordering="subnets_n")
    def subnet_count(self, network: Network) -> int:
        return network.subnets_n

    @admin.display(description="Ports", ordering="ports_n")
    def port_count(self, network: Network) -> int:
        return network.ports_n

    def get_readonly_fields(self, request, obj=None):
        return [*_PROVIDER, "revision_number", "created_at"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            if change:
                changes = {api: data[name] for name, api in _NETWORK_CHANGES.items() if name in form.changed_data}
                network = network_services.network_update(network=obj, user_is_admin=True, changes=changes)
            else:
                network = network_services.network_create(
                    project=data["project"],
                    user_is_admin=True,
                    name=data.get("name") or "",
                    description=data.get("description") or "",
                    network_type=data["network_type"],
                    physical_network=data.get("physical_network") or None,
                    segmentation_id=data.get("segmentation_id"),
                    mtu=data.get("mtu"),
                    shared=data.get("shared", False),
                    external=data.get("external", False),
                    admin_state_up=data.get("admin_state_up", True),
                    port_security_enabled=data.get("port_security_enabled", True),
                )
        except NetworkError as exc:
            raise network_refusal(exc) from None
        obj.pk = network.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        network_services.network_delete(network=obj)


# --- subnets ------------------------------------------------------------------------------------------


def _addresses(text: str) -> list[str]:
    servers = [s for s in re.split(r"[\s,]+", text or "") if s]
    for server in servers:
        try:
            ipaddress.IPv4Address(server)
        except ValueError:
            raise forms.ValidationError(f"{server[:64]} is not an IPv4 address.") from None
    return servers


class SubnetAdminForm(forms.ModelForm):
    dns_servers = forms.CharField(
        label="DNS servers", required=False, help_text="IPv4 addresses, separated by commas or spaces"
    )
    no_gateway = forms.BooleanField(label="No gateway", required=False)

    class Meta:
        model = Subnet
        fields = ["network", "name", "description", "cidr", "gateway_ip", "enable_dhcp"]
        labels = {"cidr": "CIDR", "gateway_ip": "Gateway", "enable_dhcp": "DHCP"}
        help_texts = {"gateway_ip": "Left empty, the subnet's first address (unless “No gateway”)."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["dns_servers"].initial = ", ".join(self.instance.dns_nameservers or [])
            self.fields["no_gateway"].initial = self.instance.gateway_ip is None

    def clean_dns_servers(self) -> list[str]:
        return _addresses(self.cleaned_data["dns_servers"])

    def validate_unique(self):
        pass


@admin.register(Subnet)
class SubnetAdmin(RefusalsOnDelete, ServiceAdmin):
    form = SubnetAdminForm
    list_display = ["cidr", "name", "network", "project", "gateway_ip", "enable_dhcp", "pools", "dns"]
    list_select_related = ["network", "project"]
    list_filter = ["enable_dhcp"]
    search_fields = ["cidr", "name", "id", "network__name", "project__name"]
    autocomplete_fields = ["network"]

    @admin.display(description="Allocation pools")
    def pools(self, subnet: Subnet) -> str:
        return ", ".join(f"{p['start']}–{p['end']}" for p in subnet.allocation_pools) or "—"

    @admin.display(description="DNS servers")
    def dns(self, subnet: Subnet) -> str:
        return ", ".join(subnet.dns_nameservers) or "—"

    def get_readonly_fields(self, request, obj=None):
        return ["network", "cidr", "project", "pools", "revision_number"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        gateway = None if data.get("no_gateway") else (data.get("gateway_ip") or ...)
        try:
            if change:
                changes = {
                    "name": data.get("name") or "",
                    "description": data.get("description") or "",
                    "enable_dhcp": data.get("enable_dhcp", False),
                    "dns_nameservers": data["dns_servers"],
                }
                if {"gateway_ip", "no_gateway"} & set(form.changed_data):
                    changes["gateway_ip"] = gateway
                subnet = network_services.subnet_update(subnet=obj, changes=changes)
            else:
                network = data["network"]
                subnet = network_services.subnet_create(
                    project=network.project,
                    user_is_admin=True,
                    network=network,
                    cidr=data["cidr"],
                    name=data.get("name") or "",
                    description=data.get("description") or "",
                    gateway_ip=gateway,
                    enable_dhcp=data.get("enable_dhcp", False),
                    dns_nameservers=data["dns_servers"] or None,
                )
        except NetworkError as exc:
            raise network_refusal(exc) from None
        obj.pk = subnet.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        network_services.subnet_delete(subnet=obj)


# --- ports --------------------------------------------------------------------------------------------


@admin.register(Port)
class PortAdmin(RefusalsOnDelete, admin.ModelAdmin):
    """Ports are made by the API and the servers; here they are looked at, and deleted when stuck."""

    list_display = [
        "__str__", "network", "project", "addresses", "mac_address", "status", "host", "vif_type", "device_owner",
        "device_id",
    ]  # fmt: skip
    list_select_related = ["network", "project", "host"]
    list_filter = ["status", "vif_type", "host"]
    search_fields = ["id", "name", "mac_address", "device_id", "fixed_ips__ip_address", "network__name"]
    readonly_fields = [
        "id", "name", "description", "network", "project", "addresses", "mac_address", "status", "admin_state_up",
        "host", "vif_type", "device_owner", "device_id", "port_security_enabled", "auto_delete",
        "revision_number", "created_at", "updated_at",
    ]  # fmt: skip
    fields = readonly_fields

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("fixed_ips")

    @admin.display(description="Addresses")
    def addresses(self, port: Port) -> str:
        return ", ".join(a.ip_address for a in port.fixed_ips.all()) or "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # The cloud's DHCP port goes with its network's subnets, not by itself.
        if obj is not None and obj.device_owner == Port.OWNER_DHCP:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        port_services.port_delete(port=obj)


# --- what the hosts applied ---------------------------------------------------------------------------


@admin.register(HostNetworkState)
class HostNetworkStateAdmin(ReadOnlyAdmin):
    """What each host's data plane was last sent (``generation``) and last said it applied: a host behind
    is still converging, or cannot; its error says why, its drift what it found wrong and mended."""

    list_display = ["host", "generation", "applied_generation", "in_sync", "applied_at", "drift_found", "error"]
    list_select_related = ["host"]
    search_fields = ["host__name"]
    readonly_fields = ["host", "generation", "applied_generation", "in_sync", "applied_at", "drift", "error"]
    fields = readonly_fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(behind=F("generation") - F("applied_generation"))

    @admin.display(description="In sync", boolean=True, ordering="behind")
    def in_sync(self, state: HostNetworkState) -> bool:
        return state.applied_generation >= state.generation

    @admin.display(description="Drift")
    def drift_found(self, state: HostNetworkState) -> str:
        drift = state.drift or []
        return "; ".join(str(item) for item in drift[:3]) + (f" (+{len(drift) - 3})" if len(drift) > 3 else "") or "—"


# --- security groups ----------------------------------------------------------------------------------


class SecurityGroupRuleInline(admin.TabularInline):
    """A group's rules, to look at; rules are added and removed on the rules' own pages (the services')."""

    model = SecurityGroupRule
    fk_name = "security_group"
    fields = readonly_fields = [
        "direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix", "remote_group",
        "description",
    ]  # fmt: skip
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class SecurityGroupAdminForm(forms.ModelForm):
    class Meta:
        model = SecurityGroup
        fields = ["project", "name", "description"]


@admin.register(SecurityGroup)
class SecurityGroupAdmin(RefusalsOnDelete, ServiceAdmin):
    """Groups made, renamed and deleted through the security group services (a group in use is refused);
    the default group of a project is made on the project's first need and may be deleted only here."""

    form = SecurityGroupAdminForm
    list_display = ["__str__", "project", "is_default", "rule_count", "port_count", "created_at"]
    list_select_related = ["project"]
    list_filter = ["is_default"]
    search_fields = ["name", "id", "project__name"]
    autocomplete_fields = ["project"]
    inlines = [SecurityGroupRuleInline]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # a new group's starting rules are the service's

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(rules_n=Count("rules", distinct=True), ports_n=Count("ports", distinct=True))
        )

    @admin.display(description="Rules", ordering="rules_n")
    def rule_count(self, group: SecurityGroup) -> int:
        return group.rules_n

    @admin.display(description="Ports", ordering="ports_n")
    def port_count(self, group: SecurityGroup) -> int:
        return group.ports_n

    def get_readonly_fields(self, request, obj=None):
        return ["project", "is_default", "revision_number", "created_at"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            if change:
                changes = {name: data[name] for name in ("name", "description") if name in form.changed_data}
                group = security_group_services.group_update(group=obj, changes=changes)
            else:
                group = security_group_services.group_create(
                    project=data["project"], name=data.get("name") or "", description=data.get("description") or ""
                )
        except NetworkError as exc:
            raise network_refusal(exc) from None
        obj.pk = group.pk
        obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        # The inline's rules are read-only: nothing of them is saved here.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_model(self, request, obj):
        security_group_services.group_delete(group=obj, user_is_admin=True)


class SecurityGroupRuleAdminForm(forms.ModelForm):
    protocol = forms.CharField(required=False, help_text="tcp, udp, icmp, another name or a number; empty: any.")

    class Meta:
        model = SecurityGroupRule
        fields = [
            "security_group", "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
            "remote_ip_prefix", "remote_group", "description",
        ]  # fmt: skip


@admin.register(SecurityGroupRule)
class SecurityGroupRuleAdmin(RefusalsOnDelete, ServiceAdmin):
    """Rules are added and deleted through the services (a rule is never changed in place)."""

    form = SecurityGroupRuleAdminForm
    list_display = [
        "__str__", "security_group", "project", "port_range_min", "port_range_max", "remote_ip_prefix", "remote_group",
    ]  # fmt: skip
    list_select_related = ["security_group", "project", "remote_group"]
    list_filter = ["direction", "ethertype"]
    search_fields = ["id", "security_group__name", "project__name", "remote_ip_prefix"]
    autocomplete_fields = ["security_group", "remote_group"]

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        group = data["security_group"]
        attrs = {
            "direction": data["direction"],
            "ethertype": data["ethertype"] or "IPv4",
            "protocol": data.get("protocol") or None,
            "description": data.get("description") or "",
        }
        for name in ("port_range_min", "port_range_max", "remote_ip_prefix"):
            if data.get(name) not in (None, ""):
                attrs[name] = data[name]
        try:
            rule = security_group_services.rule_create(
                project=group.project, group=group, attrs=attrs, remote_group=data.get("remote_group")
            )
        except NetworkError as exc:
            raise network_refusal(exc) from None
        obj.pk = rule.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        security_group_services.rule_delete(rule=obj)
