import uuid

from django.conf import settings
from django.db import models


def new_project_id() -> str:
    return uuid.uuid4().hex


class Project(models.Model):
    """A tenant: everything a user creates belongs to one. Ids look like Keystone's (32 hex digits)."""

    id = models.CharField(primary_key=True, max_length=64, default=new_project_id, editable=False)
    name = models.CharField(max_length=255, unique=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    READER = "reader"
    MEMBER = "member"
    ADMIN = "admin"


class Membership(models.Model):
    """A user's role in a project: readers read, members act, admins administer the whole cloud."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "project"], name="one_role_per_project")]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"
