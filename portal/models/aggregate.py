import uuid

from django.db import models

from .host import ComputeHost

AVAILABILITY_ZONE_KEY = "availability_zone"


class Aggregate(models.Model):
    """A group of hosts with metadata; its ``availability_zone`` metadata makes the hosts a zone."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=255, unique=True)
    metadata = models.JSONField(default=dict, blank=True)
    hosts = models.ManyToManyField(ComputeHost, related_name="aggregates", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def availability_zone(self) -> str | None:
        return self.metadata.get(AVAILABILITY_ZONE_KEY)
