"""Flavors, with their extra specs edited on the same page and checked by the extra-spec rules."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from portal.models import Flavor
from portal.services import flavors as flavor_services
from portal.services.extra_specs import extra_spec_problem

from .base import KeyValueRowsMixin, ServiceAdmin, ServiceRefusal

_SIZES = ["vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap"]


class FlavorAdminForm(KeyValueRowsMixin, forms.ModelForm):
    rows_prefix = "extra_specs"
    rows_label = "Extra specs"

    class Meta:
        model = Flavor
        fields = ["name", "flavorid", *_SIZES, "is_public", "description"]
        labels = {"flavorid": "ID", "memory_mb": "RAM (MB)", "root_gb": "Root disk (GB)",
                  "ephemeral_gb": "Ephemeral disk (GB)", "swap": "Swap (MB)", "vcpus": "vCPUs"}  # fmt: skip
        help_texts = {"flavorid": "What the API calls the flavor; a UUID is made when left empty."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "flavorid" in self.fields:
            self.fields["flavorid"].required = False
        self.init_rows(self.data if self.is_bound else None, self.instance)

    def rows_of(self, instance) -> dict[str, str]:
        return dict(instance.extra_specs or {}) if instance.pk else {}

    def row_problem(self, key: str, value: str) -> str | None:
        return extra_spec_problem(key, value, strict=True)

    def clean(self):
        cleaned = super().clean()
        self.clean_rows()
        return cleaned

    def validate_unique(self):
        pass  # the service says when a name or id is taken, and the page shows it


@admin.register(Flavor)
class FlavorAdmin(ServiceAdmin):
    """Sizes are fixed once a flavor exists (as in the compute API); the description and specs are not."""

    form = FlavorAdminForm
    change_form_template = "admin/portal/key_value_rows_change_form.html"
    list_display = ["name", "flavorid", "vcpus", "memory_mb", "root_gb", "is_public", "disabled", "specs"]
    search_fields = ["name", "flavorid"]
    list_filter = ["is_public", "disabled"]

    @admin.display(description="Extra specs")
    def specs(self, flavor: Flavor) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(flavor.extra_specs.items())) or "—"

    def get_readonly_fields(self, request, obj=None):
        return ["name", "flavorid", *_SIZES, "is_public"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        try:
            if change:
                flavor = flavor_services.flavor_update(flavor=obj, description=form.cleaned_data.get("description"))
            else:
                data = form.cleaned_data
                flavor = flavor_services.flavor_create(
                    name=data["name"],
                    flavorid=data.get("flavorid") or None,
                    vcpus=data["vcpus"],
                    memory_mb=data["memory_mb"],
                    root_gb=data["root_gb"],
                    ephemeral_gb=data.get("ephemeral_gb") or 0,
                    swap=data.get("swap") or 0,
                    is_public=data.get("is_public", True),
                    description=data.get("description") or None,
                )
            wanted = form.cleaned_rows
            for key in set(flavor.extra_specs) - set(wanted):
                flavor_services.flavor_extra_spec_delete(flavor=flavor, key=key)
            changed = {k: v for k, v in wanted.items() if flavor.extra_specs.get(k) != v}
            if changed:
                flavor_services.flavor_extra_specs_set(flavor=flavor, specs=changed, strict=True)
        except flavor_services.FlavorConflict as exc:
            raise ServiceRefusal(str(exc), field="name") from None
        except ValueError as exc:  # InvalidExtraSpec
            raise ServiceRefusal(str(exc)) from None
        obj.pk = flavor.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # the extra specs were written with the flavor

    def delete_model(self, request, obj):
        flavor_services.flavor_delete(flavor=obj)

    def delete_queryset(self, request, queryset):
        for flavor in queryset:
            flavor_services.flavor_delete(flavor=flavor)
