"""What every admin page that writes shares: writes go through services, and their refusals are shown.

A service that refuses raises its own exception; ``ServiceRefusal`` carries its message (and the field
it concerns) out of ``save_model``. The change view's transaction rolls back, and the form is shown
again with the message next to the field, the way a validation error would be.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.forms import formset_factory


class ServiceRefusal(Exception):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ServiceAdmin(admin.ModelAdmin):
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefusal as refusal:
            # The first pass's transaction rolled back; the second shows the refusal on the form.
            request._service_refusal = refusal
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        refusal = getattr(request, "_service_refusal", None)
        if refusal is None:
            return form

        class Refused(form):
            def clean(self):
                cleaned = super().clean()
                field = refusal.field if refusal.field in self.fields else None
                self.add_error(field, str(refusal))
                return cleaned

        return Refused


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class KeyValueForm(forms.Form):
    key = forms.CharField(max_length=255, required=False)
    value = forms.CharField(max_length=255, required=False)


KeyValueFormSet = formset_factory(KeyValueForm, extra=3, can_delete=True)


class KeyValueRowsMixin:
    """A ModelForm with a formset of key/value rows (``self.rows``) edited on the same page.

    ``rows_of(instance)`` gives the rows to start from; ``row_problem(key, value)`` says why a row is
    refused (None when it is fine). ``cleaned_rows`` is the mapping the page asks for.
    """

    rows_prefix = "rows"
    rows_label = "Rows"

    def rows_of(self, instance) -> dict[str, str]:
        raise NotImplementedError

    def row_problem(self, key: str, value: str) -> str | None:
        return None

    def init_rows(self, data, instance) -> None:
        initial = [{"key": k, "value": v} for k, v in sorted(self.rows_of(instance).items())]
        self.rows = KeyValueFormSet(data, prefix=self.rows_prefix, initial=initial)
        self.cleaned_rows: dict[str, str] = {}

    def clean_rows(self) -> None:
        if not self.rows.is_bound:
            return
        if not self.rows.is_valid():
            self.add_error(None, f"Correct the {self.rows_label.lower()} below.")
            return
        rows: dict[str, str] = {}
        for row in self.rows.forms:
            data = row.cleaned_data
            key, value = (data.get("key") or "").strip(), (data.get("value") or "").strip()
            if data.get("DELETE") or (not key and not value):
                continue
            if not key:
                row.add_error("key", "A key is required.")
            elif key in rows:
                row.add_error("key", f"{key} is given twice.")
            else:
                problem = self.row_problem(key, value)
                if problem:
                    row.add_error("value", problem)
                rows[key] = value
        if any(row.errors for row in self.rows.forms):
            self.add_error(None, f"Correct the {self.rows_label.lower()} below.")
        self.cleaned_rows = rows
