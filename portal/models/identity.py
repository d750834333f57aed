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
    # Set when the identity API deleted a project whose history (deleted servers, migrations) must stay:
    # the row is kept, disabled, and no identity call shows it again; its name stays taken.
    deleted_at = models.DateTimeField(null=True, blank=True)

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


class UserIdentity(models.Model):
    """What the identity API keeps of a local user beyond Django's user: a description, a default project,
    and, for a user deleted while their history (servers they made) must stay, when that was. A deleted
    user's row stays, inactive and without a usable password; no identity call shows it again."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="identity"
    )
    description = models.TextField(blank=True, default="")
    default_project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    deleted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"identity of {self.user}"
