from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from .host import ComputeHost
from .identity import Project
from .instance import Instance


class Migration(models.Model):
    """One move of a server between hosts (or onto the same one, for a resize), as the compute API's
    ``os-migrations`` shows it.

    While a migration is *in progress* (``ACTIVE_STATUSES``) it holds a claim: the host the instance is
    not on keeps room for it (the destination with the new flavor until the guest is built there, then
    the source with the old one until the move is confirmed or reverted). Its end (confirmed, reverted,
    error) releases that claim; nothing else has to be counted down.
    """

    class Status(models.TextChoices):
        PRE_MIGRATING = "pre-migrating"
        MIGRATING = "migrating"
        POST_MIGRATING = "post-migrating"
        FINISHED = "finished"
        CONFIRMING = "confirming"
        REVERTING = "reverting"
        CONFIRMED = "confirmed"
        REVERTED = "reverted"
        ERROR = "error"
        # Live migration: queued, preparing (the destination), running (the guest moves), then completed,
        # failed or cancelled.
        QUEUED = "queued"
        PREPARING = "preparing"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"
        # Evacuation: accepted, then done or failed.
        ACCEPTED = "accepted"
        DONE = "done"

    ACTIVE_STATUSES = (
        Status.PRE_MIGRATING,
        Status.MIGRATING,
        Status.POST_MIGRATING,
        Status.FINISHED,
        Status.CONFIRMING,
        Status.REVERTING,
        Status.QUEUED,
        Status.PREPARING,
        Status.RUNNING,
        Status.ACCEPTED,
    )

    class Type(models.TextChoices):
        RESIZE = "resize"
        MIGRATION = "migration"
        LIVE_MIGRATION = "live-migration"
        EVACUATION = "evacuation"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="migrations")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="migrations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    migration_type = models.CharField(max_length=16, choices=Type.choices)
    block_migration = models.BooleanField(default=False)  # a live migration that copies the disks
    abort_requested = models.BooleanField(default=False)  # a live migration the admin asked to abort
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PRE_MIGRATING)
    source_host = models.ForeignKey(ComputeHost, on_delete=models.PROTECT, related_name="migrations_out")
    dest_host = models.ForeignKey(
        ComputeHost, null=True, blank=True, on_delete=models.PROTECT, related_name="migrations_in"
    )
    # The flavors as the instance copies them: {"name", "flavorid", "vcpus", "memory_mb", "root_gb",
    # "ephemeral_gb", "swap", "extra_specs"}.
    old_flavor = models.JSONField()
    new_flavor = models.JSONField()
    power_on = models.BooleanField(default=True)  # the guest ran before the move and runs after it
    # The image the source uploads the disk into and the destination builds from; deleted at the end.
    transfer_image = models.UUIDField(null=True, blank=True)
    requested_host = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)  # when the guest came up on the destination
    # A live migration's progress as its source last reported it (bytes).
    memory_total_bytes = models.BigIntegerField(null=True, blank=True)
    memory_processed_bytes = models.BigIntegerField(null=True, blank=True)
    memory_remaining_bytes = models.BigIntegerField(null=True, blank=True)
    disk_total_bytes = models.BigIntegerField(null=True, blank=True)
    disk_processed_bytes = models.BigIntegerField(null=True, blank=True)
    disk_remaining_bytes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status"]), models.Index(fields=["created_at", "id"])]
        constraints = [
            # At most one move of a server at a time.
            models.UniqueConstraint(
                fields=["instance"],
                condition=models.Q(
                    status__in=[
                        "pre-migrating",
                        "migrating",
                        "post-migrating",
                        "finished",
                        "confirming",
                        "reverting",
                        "queued",
                        "preparing",
                        "running",
                        "accepted",
                    ]
                ),
                name="one_active_migration_per_instance",
            )
        ]

    def __str__(self) -> str:
        return f"{self.migration_type} {self.pk} of {self.instance_id}: {self.status}"

    @property
    def in_progress(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def transfer_percent(self) -> int | None:
        """How much of a live migration's memory and disk has moved (0-100), None before any figures."""
        total = (self.memory_total_bytes or 0) + (self.disk_total_bytes or 0)
        if not total:
            return None
        done = (self.memory_processed_bytes or 0) + (self.disk_processed_bytes or 0)
        return min(100, 100 * done // total)


class HostDrain(models.Model):
    """Emptying one host: it is disabled, and each of its servers moved away (running ones live, stopped
    ones cold), placed by the scheduler. One item per server says how its move went."""

    class Status(models.TextChoices):
        RUNNING = "running"
        CANCELLED = "cancelled"
        DONE = "done"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    host = models.ForeignKey(ComputeHost, on_delete=models.CASCADE, related_name="drains")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["host"], condition=models.Q(status="running"), name="one_running_drain_per_host"
            )
        ]

    def __str__(self) -> str:
        return f"drain of {self.host_id}: {self.status}"


class HostDrainItem(models.Model):
    """One server of a drain: waiting, moving (with its migration), or ended (moved, failed, skipped)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        MOVING = "moving"
        MOVED = "moved"
        FAILED = "failed"
        SKIPPED = "skipped"

    drain = models.ForeignKey(HostDrain, on_delete=models.CASCADE, related_name="items")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    migration = models.ForeignKey(Migration, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["drain", "instance"], name="one_item_per_server_and_drain")]

    def __str__(self) -> str:
        return f"{self.instance_id} in drain {self.drain_id}: {self.status}"
