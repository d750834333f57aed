"""Projects, who has which role in them, and the users."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from portal.models import Membership, Project
from portal.services.projects_admin import (
    ProjectConflict,
    membership_remove,
    membership_set,
    project_save,
    user_deactivate,
)

from .base import ServiceAdmin, ServiceRefusal


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    fields = ["user", "role"]
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(ServiceAdmin):
    list_display = ["name", "id", "enabled", "created_at", "deleted_at"]
    search_fields = ["name", "id"]
    fields = ["name", "description", "enabled"]
    inlines = [MembershipInline]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            project = project_save(
                project=Project.objects.get(pk=obj.pk) if change else None,
                name=data["name"],
                description=data.get("description", ""),
                enabled=data.get("enabled", True),
            )
        except ProjectConflict as exc:
            raise ServiceRefusal(str(exc), field="name") from None
        obj.pk = project.pk
        obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        # What the admin's history entry lists, as a model formset's save() would have recorded it.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for row in formset.forms:
            if not row.has_changed() and not (row.instance.pk and row.cleaned_data.get("DELETE")):
                continue
            data = row.cleaned_data
            if not data:
                continue
            if data.get("DELETE"):
                if row.instance.pk:
                    membership_remove(membership=row.instance)
                    formset.deleted_objects.append(row.instance)
            elif data.get("user") is not None:
                existed = row.instance.pk is not None
                if existed and row.instance.user_id != data["user"].pk:
                    membership_remove(membership=Membership.objects.get(pk=row.instance.pk))
                membership = membership_set(project=form.instance, user=data["user"], role=data["role"])
                if existed:
                    formset.changed_objects.append((membership, row.changed_data))
                else:
                    formset.new_objects.append(membership)

    def validate_unique(self):
        pass

    def delete_model(self, request, obj):
        raise ServiceRefusal("Projects are disabled, not deleted: their instances and history stay.")

    def has_delete_permission(self, request, obj=None):
        return False


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class CloudUserAdmin(UserAdmin):
    """Django's user pages, with deactivation through the service that also revokes the user's consoles."""

    def save_model(self, request, obj, form, change):
        deactivating = change and "is_active" in form.changed_data and not obj.is_active
        super().save_model(request, obj, form, change)
        if deactivating:
            user_deactivate(user=obj)
