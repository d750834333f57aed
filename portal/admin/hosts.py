"""Compute hosts (their compute services): up or down, enabled or disabled with a reason, resources."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from portal.models import ComputeHost, HostDrain, HostDrainItem, Migration
from portal.selectors.availability_zones import host_zone_names
from portal.selectors.host_graphs import HOST_RANGES, fleet, host_graph
from portal.selectors.hosts import claimed_usage, host_is_up
from portal.services import drains
from portal.services.compute_hosts import compute_host_update

from .base import ServiceAdmin

_RESOURCES = ["vcpus", "memory_mb", "disk_gb", "hypervisor_type", "hypervisor_version", "cpu_arch", "host_ip"]


class ComputeHostForm(forms.ModelForm):
    class Meta:
        model = ComputeHost
        fields = ["enabled", "disabled_reason", "forced_down", "runs_routers"]
        labels = {
            "disabled_reason": "Reason it is disabled",
            "forced_down": "Forced down",
            "runs_routers": "Runs routers",
        }
        help_texts = {
            "runs_routers": "Trusted with any project's routers: their routed traffic and floating IPs cross it. "
            "Taken away, its routers move to another host."
        }

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("enabled") and not (cleaned.get("disabled_reason") or "").strip():
            self.add_error("disabled_reason", "Say why the host is disabled.")
        return cleaned


class DisableForm(forms.Form):
    reason = forms.CharField(max_length=255)


@admin.register(ComputeHost)
class ComputeHostAdmin(ServiceAdmin):
    form = ComputeHostForm
    list_display = [
        "name", "state", "enabled", "disabled_reason", "last_heartbeat", "zone", "instances", "vcpu_use",
        "memory_use", "disk_use", "drain_state", "graphs_link",
    ]  # fmt: skip
    list_filter = ["enabled", "forced_down", "runs_routers"]
    search_fields = ["name"]
    actions = ["enable_hosts", "disable_hosts", "drain_hosts"]
    readonly_fields = [
        "name", "state", "last_heartbeat", "zone", "console_address", *_RESOURCES, "failed_builds", "orphan_domains",
    ]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["name", "state", "last_heartbeat", "zone", "console_address"]}),
        ("Service", {"fields": ["enabled", "disabled_reason", "forced_down", "runs_routers"]}),
        ("Resources", {"fields": [*_RESOURCES, "failed_builds", "orphan_domains"]}),
    ]

    def has_add_permission(self, request):
        return False  # a host appears when an operator enrolls it (manage.py host_enroll)

    # --- graphs: one host's, and the fleet at a glance (portal.selectors.host_graphs) ------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("fleet/", view(self.fleet_view), name="portal_computehost_fleet"),
            path("<int:host_id>/graphs/", view(self.graphs_view), name="portal_computehost_graphs"),
            path("<int:host_id>/graphs/data", view(self.graphs_data_view), name="portal_computehost_graphs_data"),
            *super().get_urls(),
        ]

    def _viewable_host(self, request, host_id: int) -> ComputeHost:
        if not self.has_view_permission(request):
            raise PermissionDenied
        host = ComputeHost.objects.filter(pk=host_id).first()
        if host is None:
            raise Http404("No such host")
        return host

    def fleet_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Fleet",
            "rows": fleet(),
        }
        return TemplateResponse(request, "admin/portal/host_fleet.html", context)

    def graphs_view(self, request, host_id: int):
        host = self._viewable_host(request, host_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Graphs of {host.name}",
            "host": host,
            "ranges": list(HOST_RANGES),
        }
        return TemplateResponse(request, "admin/portal/host_graphs.html", context)

    def graphs_data_view(self, request, host_id: int):
        host = self._viewable_host(request, host_id)
        name = request.GET.get("range") or "hour"
        if name not in HOST_RANGES:
            return JsonResponse({"error": f"range must be one of {', '.join(HOST_RANGES)}"}, status=400)
        response = JsonResponse(host_graph(host, seconds=HOST_RANGES[name]))
        response["Cache-Control"] = "no-store"
        return response

    @admin.display(description="Graphs")
    def graphs_link(self, host: ComputeHost) -> str:
        return format_html('<a href="{}">graphs</a>', reverse("admin:portal_computehost_graphs", args=[host.pk]))

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        # One query each for usage and zones, whatever the number of hosts on the page.
        self._usage = claimed_usage()
        self._zones = host_zone_names()
        return super().changelist_view(request, extra_context)

    def _used(self, host: ComputeHost) -> dict:
        usage = getattr(self, "_usage", None)
        if usage is None:
            usage = claimed_usage([host.pk])
        return usage.get(host.pk) or {}

    @admin.display(description="State")
    def state(self, host: ComputeHost) -> str:
        return "up" if host_is_up(host) else "down"

    @admin.display(description="Zone")
    def zone(self, host: ComputeHost) -> str:
        zones = getattr(self, "_zones", None) or host_zone_names([host.pk])
        return zones.get(host.pk, "")

    @admin.display(description="Instances")
    def instances(self, host: ComputeHost) -> int:
        return self._used(host).get("count") or 0

    @admin.display(description="vCPUs used")
    def vcpu_use(self, host: ComputeHost) -> str:
        return f"{self._used(host).get('vcpus') or 0} of {host.vcpus}"

    @admin.display(description="RAM used (MB)")
    def memory_use(self, host: ComputeHost) -> str:
        return f"{self._used(host).get('memory_mb') or 0} of {host.memory_mb}"

    @admin.display(description="Disk used (GB)")
    def disk_use(self, host: ComputeHost) -> str:
        return f"{self._used(host).get('disk_gb') or 0} of {host.disk_gb}"

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        updated = compute_host_update(
            host=obj,
            enabled=data["enabled"],
            disabled_reason=data.get("disabled_reason", "") if not data["enabled"] else "",
            forced_down=data["forced_down"],
            runs_routers=data["runs_routers"],
        )
        obj.refresh_from_db()
        return updated

    @admin.action(description="Enable the selected hosts")
    def enable_hosts(self, request, queryset):
        for host in queryset:
            compute_host_update(host=host, enabled=True)
        self.message_user(request, f"Enabled {queryset.count()} host(s).", messages.SUCCESS)

    @admin.display(description="Drain")
    def drain_state(self, host: ComputeHost) -> str:
        drain = HostDrain.objects.filter(host=host).order_by("-created_at").first()
        return f"{drain.status} since {drain.created_at:%Y-%m-%d %H:%M}" if drain else ""

    @admin.action(description="Drain the selected hosts (disable, move every server away)")
    def drain_hosts(self, request, queryset):
        for host in queryset:
            try:
                drains.drain_start(user=request.user, host=host)
            except drains.DrainConflict as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Draining {host.name}.", messages.SUCCESS)

    @admin.action(description="Disable the selected hosts (give a reason)")
    def disable_hosts(self, request, queryset):
        form = DisableForm(request.POST if "reason" in request.POST else None)
        if form.is_bound and form.is_valid():
            for host in queryset:
                compute_host_update(host=host, enabled=False, disabled_reason=form.cleaned_data["reason"])
            self.message_user(request, f"Disabled {queryset.count()} host(s).", messages.SUCCESS)
            return None
        return TemplateResponse(
            request,
            "admin/portal/disable_hosts.html",
            {**self.admin_site.each_context(request), "hosts": queryset, "form": form, "opts": self.model._meta,
             "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME, "title": "Disable hosts"},
        )  # fmt: skip


class DrainItemInline(admin.TabularInline):
    model = HostDrainItem
    fields = ["instance", "status", "migration", "reason", "updated_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(HostDrain)
class HostDrainAdmin(admin.ModelAdmin):
    list_display = ["host", "status", "created_at", "updated_at", "user"]
    list_filter = ["status"]
    readonly_fields = ["uuid", "host", "status", "created_at", "updated_at", "user"]
    inlines = [DrainItemInline]
    actions = ["cancel_drains"]

    def has_add_permission(self, request):
        return False  # a drain starts from a host's page (the "Drain" action) or the API

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Cancel the selected drains (moves under way finish)")
    def cancel_drains(self, request, queryset):
        for drain in queryset:
            try:
                drains.drain_cancel(drain=drain)
            except drains.DrainConflict as exc:
                self.message_user(request, str(exc), messages.ERROR)


@admin.register(Migration)
class MigrationAdmin(admin.ModelAdmin):
    list_display = [
        "id", "instance", "migration_type", "status", "source_host", "dest_host", "progress", "created_at",
    ]  # fmt: skip
    list_filter = ["migration_type", "status"]
    search_fields = ["instance__uuid", "instance__name"]
    list_select_related = ["instance", "source_host", "dest_host"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Migration._meta.fields] + ["progress"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Progress")
    def progress(self, migration: Migration) -> str:
        percent = migration.transfer_percent
        return "" if percent is None else f"{percent}%"
