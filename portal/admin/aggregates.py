"""Host aggregates: their hosts, their metadata and the availability zone they make of their hosts."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from portal.models import AVAILABILITY_ZONE_KEY, Aggregate, ComputeHost
from portal.services import aggregates as aggregate_services

from .base import KeyValueRowsMixin, ServiceAdmin, ServiceRefusal


class AggregateAdminForm(KeyValueRowsMixin, forms.ModelForm):
    rows_prefix = "metadata"
    rows_label = "Metadata"

    availability_zone = forms.CharField(
        label="Availability zone",
        max_length=255,
        required=False,
        help_text="The zone this aggregate's hosts are in; empty: the default zone.",
    )
    hosts = forms.ModelMultipleChoiceField(
        queryset=ComputeHost.objects.order_by("name"), required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Aggregate
        fields = ["name"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["availability_zone"].initial = self.instance.availability_zone or ""
            self.fields["hosts"].initial = list(self.instance.hosts.values_list("pk", flat=True))
        self.init_rows(self.data if self.is_bound else None, self.instance)

    def rows_of(self, instance) -> dict[str, str]:
        metadata = dict(instance.metadata or {}) if instance.pk else {}
        metadata.pop(AVAILABILITY_ZONE_KEY, None)
        return {k: str(v) for k, v in metadata.items()}

    def row_problem(self, key: str, value: str) -> str | None:
        if key == AVAILABILITY_ZONE_KEY:
            return "Set the zone in the Availability zone field."
        return None

    def clean(self):
        cleaned = super().clean()
        self.clean_rows()
        return cleaned

    def validate_unique(self):
        pass  # the service says when the name is taken


@admin.register(Aggregate)
class AggregateAdmin(ServiceAdmin):
    form = AggregateAdminForm
    change_form_template = "admin/portal/key_value_rows_change_form.html"
    fields = ["name", "availability_zone", "hosts"]
    list_display = ["name", "zone", "host_names", "other_metadata"]
    search_fields = ["name"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("hosts")

    @admin.display(description="Availability zone")
    def zone(self, aggregate: Aggregate) -> str:
        return aggregate.availability_zone or "—"

    @admin.display(description="Hosts")
    def host_names(self, aggregate: Aggregate) -> str:
        return ", ".join(h.name for h in aggregate.hosts.all()) or "—"

    @admin.display(description="Metadata")
    def other_metadata(self, aggregate: Aggregate) -> str:
        rows = {k: v for k, v in aggregate.metadata.items() if k != AVAILABILITY_ZONE_KEY}
        return ", ".join(f"{k}={v}" for k, v in sorted(rows.items())) or "—"

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        zone = data.get("availability_zone", "").strip() or None
        try:
            if change:
                before = Aggregate.objects.get(pk=obj.pk)
                aggregate = aggregate_services.aggregate_update(
                    aggregate=before,
                    name=data["name"],
                    **({"availability_zone": zone} if zone != before.availability_zone else {}),
                )
            else:
                aggregate = aggregate_services.aggregate_create(name=data["name"], availability_zone=zone)
            current = {k: v for k, v in aggregate.metadata.items() if k != AVAILABILITY_ZONE_KEY}
            wanted = form.cleaned_rows
            changes = {k: None for k in current if k not in wanted}
            changes.update({k: v for k, v in wanted.items() if current.get(k) != v})
            if changes:
                aggregate = aggregate_services.aggregate_set_metadata(aggregate=aggregate, metadata=changes)
            members = set(aggregate.hosts.all())
            chosen = set(data.get("hosts") or [])
            for host in sorted(members - chosen, key=lambda h: h.name):
                aggregate_services.aggregate_remove_host(aggregate=aggregate, host=host)
            for host in sorted(chosen - members, key=lambda h: h.name):
                aggregate_services.aggregate_add_host(aggregate=aggregate, host=host)
        except aggregate_services.AggregateConflict as exc:
            raise ServiceRefusal(str(exc), field="hosts" if "host" in str(exc).lower() else "name") from None
        except aggregate_services.InvalidAggregateAction as exc:
            raise ServiceRefusal(str(exc), field="availability_zone") from None
        except aggregate_services.AggregateHostNotFound as exc:
            raise ServiceRefusal(str(exc), field="hosts") from None
        obj.pk = aggregate.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # hosts were added and removed one by one through the service

    def delete_model(self, request, obj):
        try:
            aggregate_services.aggregate_delete(aggregate=obj)
        except aggregate_services.InvalidAggregateAction as exc:
            raise ServiceRefusal(str(exc)) from None

    def delete_queryset(self, request, queryset):
        for aggregate in queryset:
            self.delete_model(request, aggregate)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceRefusal as refusal:
            from django.contrib import messages
            from django.http import HttpResponseRedirect

            self.message_user(request, str(refusal), messages.ERROR)
            return HttpResponseRedirect(request.path.rsplit("/delete/", 1)[0] + "/change/")
