import uuid

from django.db import models

from .identity import Project


class Image(models.Model):
    """A disk image in the image service; its file lives under ``CLOUD['IMAGE_DIR']``."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        SAVING = "saving"
        ACTIVE = "active"
        KILLED = "killed"
        DELETED = "deleted"

    class Visibility(models.TextChoices):
        PUBLIC = "public"
        PRIVATE = "private"
        SHARED = "shared"
        COMMUNITY = "community"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255, blank=True, null=True)
    owner = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="images")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.SHARED)
    disk_format = models.CharField(max_length=16, blank=True, null=True)
    container_format = models.CharField(max_length=16, blank=True, null=True)
    size = models.BigIntegerField(null=True, blank=True)
    virtual_size = models.BigIntegerField(null=True, blank=True)
    checksum = models.CharField(max_length=32, blank=True, null=True)  # md5, as the image API reports it
    os_hash_algo = models.CharField(max_length=16, blank=True, null=True)
    os_hash_value = models.CharField(max_length=128, blank=True, null=True)
    min_disk = models.PositiveIntegerField(default=0)
    min_ram = models.PositiveIntegerField(default=0)
    protected = models.BooleanField(default=False)
    os_hidden = models.BooleanField(default=False)
    properties = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    # A backup (createBackup): how many backups of its server and backup type to keep once it is active.
    # Null for every other image; never shown by the image API.
    backup_rotation = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [models.Index(fields=["name"])]

    def __str__(self) -> str:
        return self.name or str(self.id)
