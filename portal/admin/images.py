"""Images, read-only here (the image API and the portal upload them); deleting goes through the service."""

from __future__ import annotations

from django.contrib import admin

from portal.models import Image
from portal.services.images import ImageError, image_delete

from .base import ServiceRefusal


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "status", "visibility", "disk_format", "size", "owner"]
    list_filter = ["status", "visibility"]
    search_fields = ["name", "id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(status=Image.Status.DELETED)

    def delete_model(self, request, obj):
        try:
            image_delete(ctx=None, image=obj)
        except ImageError as exc:
            raise ServiceRefusal(str(exc)) from None

    def delete_queryset(self, request, queryset):
        for image in queryset:
            self.delete_model(request, image)
