"""Routers and floating IPs for operators: routers made, changed (name, state, gateway) and deleted through
the router services, with the host each runs on and its interfaces to look at; floating IPs to look at,
disassociate and release through the floating IP services. Their refusals are shown on the page."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import CharField, Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Cast, Coalesce

from portal.models import FloatingIP, Network, Port, Router
from portal.selectors.router_listings import router_ports
from portal.services import floating_ips as floating_ip_services
from portal.services import routers as router_services
from portal.services.network_errors import NetworkError

from .base import ServiceAdmin
from .networks import RefusalsOnDelete, network_refusal

# --- routers --------------------------------------------------------------------------------------------


class RouterAdminForm(forms.ModelForm):
    class Meta:
        model = Router
        fields = ["project", "name", "description", "admin_state_up", "external_network"]
        labels = {"external_network": "External gateway network"}
        help_texts = {
            "project": "The project that owns the router (its quota counts it).",
            "external_network": "An external network: the router's way out, and where its floating IPs come from.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "project" in self.fields:
            self.fields["project"].required = True
        if "external_network" in self.fields:
            self.fields["external_network"].queryset = Network.objects.filter(external=True)


def _interface_count():
    ports = (
        Port.objects.filter(
            device_id=Cast(OuterRef("pk"), output_field=CharField()), device_owner=Port.OWNER_ROUTER_INTERFACE
        )
        .order_by()
        .values("device_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(ports, output_field=IntegerField()), Value(0))


@admin.register(Router)
class RouterAdmin(RefusalsOnDelete, ServiceAdmin):
    """The host a router runs on is the control plane's choice (and changes when that host dies); its
    interfaces are added and removed through the networking API and the portal."""

    form = RouterAdminForm
    list_display = [
        "__str__", "project", "status", "admin_state_up", "external_network", "host", "interface_count", "created_at",
    ]  # fmt: skip
    list_select_related = ["project", "external_network", "host"]
    list_filter = ["status", "admin_state_up", "host"]
    search_fields = ["name", "id", "project__name", "host__name", "external_network__name"]
    autocomplete_fields = ["project"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(interfaces_n=_interface_count())

    @admin.display(description="Interfaces", ordering="interfaces_n")
    def interface_count(self, router: Router) -> int:
        return router.interfaces_n

    @admin.display(description="Interfaces and gateway")
    def interfaces(self, router: Router) -> str:
        ports = router_ports([router]).get(str(router.pk), [])
        lines = []
        for port in ports:
            kind = "gateway" if port.device_owner == Port.OWNER_ROUTER_GATEWAY else "interface"
            where = ", ".join(f"{a.ip_address} on {a.subnet.cidr}" for a in port.fixed_ips.all()) or "no address"
            lines.append(f"{kind}: {where} ({port.network.name or port.network_id}, port {port.pk}, {port.status})")
        return "; ".join(lines) or "—"

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["project", "status", "host", "enable_snat", "interfaces", "revision_number", "created_at"]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        network = data.get("external_network")
        gateway = {"network_id": str(network.pk)} if network is not None else None
        try:
            if change:
                changes = {
                    name: data[name]
                    for name in ("name", "description", "admin_state_up")
                    if name in form.changed_data
                }  # fmt: skip
                if "external_network" in form.changed_data:
                    changes["external_gateway_info"] = gateway or {}
                router = router_services.router_update(
                    router=Router.objects.get(pk=obj.pk), project=obj.project, user_is_admin=True, changes=changes
                )
            else:
                router = router_services.router_create(
                    project=data["project"],
                    user_is_admin=True,
                    name=data.get("name") or "",
                    description=data.get("description") or "",
                    admin_state_up=data.get("admin_state_up", True),
                    external_gateway_info=gateway,
                )
        except NetworkError as exc:
            raise network_refusal(exc) from None
        obj.pk = router.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        router_services.router_delete(router=obj)


# --- floating IPs ---------------------------------------------------------------------------------------


@admin.register(FloatingIP)
class FloatingIPAdmin(RefusalsOnDelete, admin.ModelAdmin):
    """Floating IPs are allocated and associated by the projects (the networking API, the portal); here
    they are looked at, disassociated and released."""

    list_display = [
        "floating_ip_address", "project", "floating_network", "fixed_ip_address", "port", "router", "status",
        "created_at",
    ]  # fmt: skip
    list_select_related = ["project", "floating_network", "port", "router"]
    list_filter = ["status", "floating_network"]
    search_fields = [
        "floating_ip_address", "fixed_ip_address", "id", "project__name", "floating_network__name", "port__device_id",
    ]  # fmt: skip
    readonly_fields = [
        "id", "project", "floating_network", "floating_ip_address", "floating_port", "port", "fixed_ip_address",
        "router", "status", "description", "revision_number", "created_at", "updated_at",
    ]  # fmt: skip
    fields = readonly_fields
    actions = ["disassociate"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Disassociate the selected floating IPs", permissions=["delete"])
    def disassociate(self, request, queryset):
        done = 0
        for floating_ip in queryset.filter(port__isnull=False):
            try:
                floating_ip_services.floating_ip_disassociate(floating_ip=floating_ip)
            except NetworkError as exc:
                self.message_user(request, f"{floating_ip}: {exc.message}", messages.ERROR)
            else:
                done += 1
        self.message_user(request, f"Disassociated {done} floating IP{'s' if done != 1 else ''}.", messages.SUCCESS)

    def delete_model(self, request, obj):
        floating_ip_services.floating_ip_delete(floating_ip=obj)
