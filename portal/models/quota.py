from django.conf import settings
from django.db import models

from .identity import Project


class QuotaClassLimit(models.Model):
    """A limit of a quota class; only the class ``default`` applies, to every project without its own."""

    class_name = models.CharField(max_length=255, default="default")
    resource = models.CharField(max_length=64)
    hard_limit = models.BigIntegerField()  # -1 is unlimited

    class Meta:
        ordering = ["class_name", "resource"]
        constraints = [models.UniqueConstraint(fields=["class_name", "resource"], name="one_limit_per_class")]

    def __str__(self) -> str:
        return f"{self.class_name}.{self.resource} = {self.hard_limit}"


class QuotaLimit(models.Model):
    """A project's own limit for a resource, or a user's within the project when ``user`` is set."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="quota_limits")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    resource = models.CharField(max_length=64)
    hard_limit = models.BigIntegerField()  # -1 is unlimited

    class Meta:
        ordering = ["project", "resource"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "resource"], condition=models.Q(user__isnull=True), name="one_project_limit"
            ),
            models.UniqueConstraint(
                fields=["project", "user", "resource"], condition=models.Q(user__isnull=False), name="one_user_limit"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}.{self.resource} = {self.hard_limit}"
