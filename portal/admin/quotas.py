"""Quota limits: the defaults (the ``default`` quota class) and each project's (or user's) own, for the compute
resources, the image service's (``image_count_total``, ``image_size_total``) and the network controller's
(``network``, ``subnet``, ``port``, ``security_group``, ``security_group_rule``, ``router``, ``floatingip``;
per project only)."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from portal.models import QuotaClassLimit, QuotaLimit
from portal.selectors.quotas import PROJECT_ONLY, RESOURCES
from portal.services import quotas as quota_services


class QuotaForm(forms.ModelForm):
    resource = forms.ChoiceField(
        choices=[(r, r) for r in RESOURCES],
        help_text="image_size_total is in MiB; the others count items. The image and network limits "
        "(network, subnet, port, security_group, security_group_rule, router, floatingip) are per project only.",
    )
    hard_limit = forms.IntegerField(min_value=-1, max_value=quota_services.MAX_LIMIT, help_text="-1 is unlimited")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("user") is not None and cleaned.get("resource") in PROJECT_ONLY:
            self.add_error("user", f"{cleaned['resource']} is set per project only, not per user.")
        return cleaned


@admin.register(QuotaClassLimit)
class QuotaClassLimitAdmin(admin.ModelAdmin):
    """Only the ``default`` class applies: it is what every project without limits of its own gets."""

    form = QuotaForm
    list_display = ["class_name", "resource", "hard_limit"]
    list_filter = ["class_name"]

    def save_model(self, request, obj, form, change):
        quota_services.quota_class_update(class_name=obj.class_name, values={obj.resource: obj.hard_limit})
        obj.pk = QuotaClassLimit.objects.get(class_name=obj.class_name, resource=obj.resource).pk

    def delete_model(self, request, obj):
        quota_services.quota_class_limit_remove(class_name=obj.class_name, resource=obj.resource)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(QuotaLimit)
class QuotaLimitAdmin(admin.ModelAdmin):
    """A project's limit, or a user's within the project. Set as with ``force``: it may be below usage."""

    form = QuotaForm
    list_display = ["project", "user", "resource", "hard_limit"]
    list_select_related = ["project", "user"]
    list_filter = ["resource"]
    search_fields = ["project__name", "project__id", "user__username"]
    autocomplete_fields = ["project"]

    def save_model(self, request, obj, form, change):
        if change and form.initial.get("resource") not in (None, obj.resource):
            quota_services.quota_limit_remove(project=obj.project, user=obj.user, resource=form.initial["resource"])
        quota_services.quota_set_update(
            project=obj.project, user=obj.user, values={obj.resource: obj.hard_limit}, force=True
        )
        obj.pk = QuotaLimit.objects.get(project=obj.project, user=obj.user, resource=obj.resource).pk

    def delete_model(self, request, obj):
        quota_services.quota_limit_remove(project=obj.project, user=obj.user, resource=obj.resource)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("project", "user"):
            self.delete_model(request, obj)
