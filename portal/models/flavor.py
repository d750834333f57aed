from django.core.validators import MinValueValidator
from django.db import models


class Flavor(models.Model):
    """A size of virtual machine. ``flavorid`` is the id the API shows (a string, often a number)."""

    flavorid = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255, unique=True)
    vcpus = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    memory_mb = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    root_gb = models.PositiveIntegerField(default=0)
    ephemeral_gb = models.PositiveIntegerField(default=0)
    swap = models.PositiveIntegerField(default=0)
    # Kept and shown as Nova keeps it (until compute API 2.102); nothing scales bandwidth by it here.
    rxtx_factor = models.FloatField(default=1.0)
    is_public = models.BooleanField(default=True)
    disabled = models.BooleanField(default=False)
    description = models.TextField(blank=True, null=True)
    extra_specs = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["memory_mb", "flavorid"]
        constraints = [
            models.CheckConstraint(condition=models.Q(vcpus__gte=1), name="flavor_vcpus_positive"),
            models.CheckConstraint(condition=models.Q(rxtx_factor__gt=0), name="flavor_rxtx_factor_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class FlavorAccess(models.Model):
    """A project allowed to use a private flavor."""

    flavor = models.ForeignKey(Flavor, on_delete=models.CASCADE, related_name="access")
    project = models.ForeignKey("portal.Project", on_delete=models.CASCADE, related_name="flavor_access")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["flavor", "project"], name="one_access_per_project")]

    def __str__(self) -> str:
        return f"{self.flavor} for {self.project_id}"
