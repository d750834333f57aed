import uuid

from django.db import models


class ComputeHost(models.Model):
    """A hypervisor host and its compute service, as its heartbeats describe it."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=255, unique=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True, default="")
    forced_down = models.BooleanField(default=False)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    vcpus = models.PositiveIntegerField(default=0)
    memory_mb = models.PositiveBigIntegerField(default=0)
    disk_gb = models.PositiveBigIntegerField(default=0)
    hypervisor_type = models.CharField(max_length=64, blank=True, default="")
    hypervisor_version = models.BigIntegerField(default=0)
    cpu_arch = models.CharField(max_length=32, blank=True, default="")
    host_ip = models.GenericIPAddressField(null=True, blank=True)
    # Per-host over-commit; None means the aggregate's, else the scheduler's default.
    cpu_allocation_ratio = models.FloatField(null=True, blank=True)
    ram_allocation_ratio = models.FloatField(null=True, blank=True)
    disk_allocation_ratio = models.FloatField(null=True, blank=True)
    failed_builds = models.PositiveIntegerField(default=0)  # since the last successful build
    orphan_domains = models.JSONField(default=list, blank=True)
    uptime = models.CharField(max_length=255, blank=True, default="")  # the host's ``uptime`` line at its last beat
    # How Cinder reaches the host (ip, host, initiator, …), as its heartbeat reports it; sent with attachments.
    volume_connector = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
