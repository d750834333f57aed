"""Which hosts may speak (their enrolled keys, revocable) and which messages the conductor refused."""

from __future__ import annotations

from django.contrib import admin, messages

from portal.models import HostCredential, MessageRefusal
from portal.services.host_trust import host_credentials_revoke


@admin.register(HostCredential)
class HostCredentialAdmin(admin.ModelAdmin):
    """Keys are issued with ``manage.py host_enroll`` (the private half is written once, to a file for the
    host); here they are seen and revoked."""

    list_display = ["host", "fingerprint", "created_at", "revoked_at", "active"]
    list_filter = ["revoked_at"]
    search_fields = ["host__name", "fingerprint"]
    list_select_related = ["host"]
    readonly_fields = ["host", "public_key", "fingerprint", "created_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(boolean=True, description="Active")
    def active(self, credential: HostCredential) -> bool:
        return credential.revoked_at is None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected credentials (their hosts can no longer speak)")
    def revoke(self, request, queryset):
        hosts = {credential.host for credential in queryset.select_related("host") if credential.revoked_at is None}
        for host in hosts:
            host_credentials_revoke(host=host)
        self.message_user(request, f"Revoked the credentials of {len(hosts)} host(s).", messages.SUCCESS)


@admin.register(MessageRefusal)
class MessageRefusalAdmin(admin.ModelAdmin):
    """Messages the conductor did not believe: forged, replayed, or from a host speaking for another."""

    list_display = ["last_at", "sender", "task", "reason", "count", "last_detail"]
    list_filter = ["reason", "task"]
    search_fields = ["sender", "task"]
    readonly_fields = ["sender", "task", "reason", "count", "first_at", "last_at", "last_detail"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
