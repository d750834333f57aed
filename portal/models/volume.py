import uuid

from django.db import models
from django.db.models import Q

from .instance import Instance


class BlockDeviceMapping(models.Model):
    """A Cinder volume an instance uses: attached to it, being attached or detached, or its boot disk.

    ``attachment_id`` is the Cinder attachment (microversion 3.27+) that reserves the volume for the
    instance; ``connection_info`` is what Cinder answered for the instance's host (the host builds the
    libvirt disk from it). A row whose ``volume_id`` is empty stands for a volume the cloud still has to
    create for a boot (from an image, or blank).
    """

    class Status(models.TextChoices):
        PENDING = "pending"  # asked for at boot: no volume or attachment yet
        RESERVING = "reserving"  # the API is reserving the volume with Cinder
        ATTACHING = "attaching"  # reserved; the host is plugging it in
        ATTACHED = "attached"
        DETACHING = "detaching"  # the host is unplugging it
        ROLLING_BACK = "rolling_back"  # an attach Cinder could not complete: the host is unplugging it
        RELEASING = "releasing"  # unplugged (or the instance is gone); Cinder's attachment is still to delete

    class Source(models.TextChoices):
        VOLUME = "volume"
        IMAGE = "image"
        BLANK = "blank"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="block_devices")
    source_type = models.CharField(max_length=16, choices=Source.choices, default=Source.VOLUME)
    image_id = models.UUIDField(null=True, blank=True)  # source image of a volume made at boot
    volume_size = models.PositiveIntegerField(null=True, blank=True)  # GiB, for a volume made at boot
    volume_id = models.CharField(max_length=36, blank=True, default="")
    attachment_id = models.CharField(max_length=36, blank=True, default="")
    device = models.CharField(max_length=32, blank=True, default="")  # "/dev/vdb"
    tag = models.CharField(max_length=60, blank=True, null=True)
    delete_on_termination = models.BooleanField(default=False)
    boot_index = models.IntegerField(null=True, blank=True)  # 0 for the root disk
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    connection_info = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "volume_id"], condition=~Q(volume_id=""), name="one_mapping_per_volume"
            ),
        ]
        indexes = [models.Index(fields=["status", "updated_at"]), models.Index(fields=["volume_id"])]

    def __str__(self) -> str:
        return f"{self.volume_id or self.source_type} on {self.device or '?'} ({self.status})"

    @property
    def is_root(self) -> bool:
        return self.boot_index == 0
