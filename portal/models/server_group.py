import uuid

from django.conf import settings
from django.db import models

from .identity import Project


class ServerGroup(models.Model):
    """Servers the scheduler keeps together (affinity) or apart (anti-affinity)."""

    class Policy(models.TextChoices):
        AFFINITY = "affinity"
        ANTI_AFFINITY = "anti-affinity"
        SOFT_AFFINITY = "soft-affinity"
        SOFT_ANTI_AFFINITY = "soft-anti-affinity"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=255)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="server_groups")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="server_groups")
    policy = models.CharField(max_length=32, choices=Policy.choices)
    rules = models.JSONField(default=dict, blank=True)  # {"max_server_per_host": n}
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.policy})"
