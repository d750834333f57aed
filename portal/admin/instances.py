"""Instances, read-mostly: their state changes only through the same services the API calls."""

from __future__ import annotations

from django.contrib import admin, messages

from portal.auth.context import RequestContext
from portal.models import ConsoleToken, Instance, InstanceAction, InstanceActionEvent, InstanceFault, Role
from portal.services import actions as action_services
from portal.services import instances as instance_services
from portal.services.lifecycle import StateConflict
from portal.states import api_status

from .base import ReadOnlyAdmin


class FaultInline(admin.TabularInline):
    model = InstanceFault
    extra = 0
    can_delete = False
    readonly_fields = ["code", "message", "details", "host", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ActionInline(admin.TabularInline):
    model = InstanceAction
    extra = 0
    can_delete = False
    fields = ["action", "request_id", "user", "start_time", "message"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _admin_ctx(request, instance: Instance) -> RequestContext:
    return RequestContext(user=request.user, project=instance.project, role=Role.ADMIN)


def _run(modeladmin, request, queryset, verb: str, call) -> None:
    done, refused = 0, []
    for instance in queryset.select_related("project", "host"):
        try:
            call(ctx=_admin_ctx(request, instance), instance=instance)
            done += 1
        except StateConflict as exc:
            refused.append(str(exc))
    if done:
        modeladmin.message_user(request, f"{verb}: requested for {done} instance(s).", messages.SUCCESS)
    for message in refused:
        modeladmin.message_user(request, message, messages.ERROR)


def _power(action: str):
    def call(*, ctx, instance):
        action_services.instance_action(ctx=ctx, instance=instance, action=action)

    return call


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = ["name", "uuid", "project", "status", "task_state", "power_state", "host", "created_at"]
    list_filter = ["vm_state", "task_state", "host"]
    search_fields = ["name", "uuid"]
    list_select_related = ["project", "host"]
    inlines = [FaultInline, ActionInline]
    actions = ["start", "stop", "reboot", "reboot_hard", "delete_instances"]

    @admin.display(description="Status")
    def status(self, instance: Instance) -> str:
        return api_status(instance.vm_state, instance.task_state)

    def has_change_permission(self, request, obj=None):
        # Actions need it; every field stays read-only (see get_readonly_fields).
        return request.user.is_active and request.user.is_staff and obj is None

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Instance._meta.fields]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a delete asks the host to clean up: see "delete_instances"
        return actions

    @admin.action(description="Start the selected instances", permissions=["change"])
    def start(self, request, queryset):
        _run(self, request, queryset, "Start", _power("start"))

    @admin.action(description="Stop the selected instances", permissions=["change"])
    def stop(self, request, queryset):
        _run(self, request, queryset, "Stop", _power("stop"))

    @admin.action(description="Reboot the selected instances", permissions=["change"])
    def reboot(self, request, queryset):
        _run(self, request, queryset, "Reboot", _power("reboot"))

    @admin.action(description="Hard reboot the selected instances", permissions=["change"])
    def reboot_hard(self, request, queryset):
        _run(self, request, queryset, "Hard reboot", _power("reboot_hard"))

    @admin.action(description="Delete the selected instances", permissions=["change"])
    def delete_instances(self, request, queryset):
        _run(self, request, queryset, "Delete", instance_services.instance_delete)


class EventInline(admin.TabularInline):
    model = InstanceActionEvent
    extra = 0
    can_delete = False
    readonly_fields = ["event", "start_time", "finish_time", "result", "host", "details"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(InstanceAction)
class InstanceActionAdmin(ReadOnlyAdmin):
    list_display = ["action", "instance", "request_id", "user", "start_time", "message"]
    list_filter = ["action"]
    list_select_related = ["instance", "user"]
    inlines = [EventInline]

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff


@admin.register(ConsoleToken)
class ConsoleTokenAdmin(ReadOnlyAdmin):
    list_display = ["instance", "user", "console_type", "expires_at"]
    exclude = ["token_hash"]
