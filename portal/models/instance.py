from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F

from portal.states import PowerState, VmState

from .flavor import Flavor
from .host import ComputeHost
from .identity import Project
from .image import Image
from .locking import ChangeLocking


class Instance(models.Model):
    """A virtual machine. Rows stay after deletion (``vm_state='deleted'``) so the history is kept.

    The flavor's sizes are copied at creation: a flavor changed or deleted later does not change what
    the instance is. ``host`` is the host whose resources the instance holds (its claim).
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, null=True)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="instances")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="instances")

    flavor = models.ForeignKey(Flavor, null=True, on_delete=models.SET_NULL, related_name="instances")
    flavor_name = models.CharField(max_length=255)
    # The flavor's public id, kept when the flavor is deleted (the compute API shows it until 2.47).
    flavor_ref = models.CharField(max_length=255, blank=True, default="")
    vcpus = models.PositiveIntegerField()
    memory_mb = models.PositiveIntegerField()
    root_gb = models.PositiveIntegerField()
    ephemeral_gb = models.PositiveIntegerField(default=0)
    swap = models.PositiveIntegerField(default=0)
    flavor_extra_specs = models.JSONField(default=dict, blank=True)

    image = models.ForeignKey(Image, null=True, on_delete=models.SET_NULL, related_name="instances")
    image_ref = models.UUIDField(null=True, blank=True)  # None for a server booted from a volume

    # Values come from portal.states, which grows with the actions; no ``choices`` here so that a new
    # state never needs a migration.
    vm_state = models.CharField(max_length=32, default=VmState.BUILDING)
    task_state = models.CharField(max_length=32, null=True, blank=True)
    power_state = models.PositiveSmallIntegerField(choices=PowerState.CHOICES, default=PowerState.NOSTATE)
    task_deadline = models.DateTimeField(null=True, blank=True)
    # The percent done of the task's current step where the host measures it (the image download of a
    # build, a live migration's transfer); 0 when a step begins. ``states.server_progress`` makes the
    # API's ``progress`` of it.
    step_progress = models.PositiveSmallIntegerField(default=0)

    host = models.ForeignKey(ComputeHost, null=True, blank=True, on_delete=models.PROTECT, related_name="instances")
    availability_zone = models.CharField(max_length=255, blank=True, default="")
    # The zone the server must stay in when it moves (Nova's request spec zone): the zone its boot asked
    # for, or the one an unshelve or an update (2.104) pinned it to; None when it is not pinned.
    pinned_availability_zone = models.CharField(max_length=255, null=True, blank=True)
    vnc_host = models.CharField(max_length=255, blank=True, default="")
    vnc_port = models.PositiveIntegerField(null=True, blank=True)
    networks = models.CharField(max_length=16, default="auto")  # "auto" or "none", as requested
    addresses = models.JSONField(default=list, blank=True)  # [{"addr", "version", "mac"}]
    mac_address = models.CharField(max_length=17, blank=True, default="")
    user_data = models.TextField(blank=True, null=True)
    # Personality files (compute API before 2.57), [{"path", "contents"}] with the contents base64 as
    # given: delivered through the config drive and the metadata service, never written into the disk.
    personality = models.JSONField(default=list, blank=True)
    key_name = models.CharField(max_length=255, blank=True, null=True)
    key_data = models.TextField(blank=True, null=True)  # the public key as it was at boot
    hostname = models.CharField(max_length=255, blank=True, default="")
    # The addresses the owner says the server is reached at (accessIPv4/accessIPv6), stored in their
    # compressed form; the cloud itself never uses them.
    access_ip_v4 = models.CharField(max_length=15, blank=True, default="")
    access_ip_v6 = models.CharField(max_length=39, blank=True, default="")
    config_drive = models.BooleanField(default=False)
    scheduler_hints = models.JSONField(default=dict, blank=True)
    server_group = models.ForeignKey(
        "portal.ServerGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="members"
    )
    attempted_hosts = models.JSONField(default=list, blank=True)  # hosts a build failed on, for rescheduling
    # The only host the boot request allows (an admin's 2.74 ``host``/``hypervisor_hostname``, or ``zone:host``,
    # which forces it past most filters); a build that fails there is not rescheduled elsewhere.
    requested_host = models.CharField(max_length=255, blank=True, default="")
    force_host = models.BooleanField(default=False)
    locked = models.BooleanField(default=False)
    locked_by = models.CharField(max_length=16, blank=True, default="")  # "owner" | "admin"
    locked_reason = models.CharField(max_length=255, blank=True, null=True)
    metadata = models.JSONField(default=dict, blank=True)
    reservation_id = models.CharField(max_length=32, blank=True, default="")
    launch_index = models.PositiveIntegerField(default=0)
    build_attempts = models.PositiveSmallIntegerField(default=0)
    # A shelved server's disk, kept as an image until it is unshelved, and when it was shelved.
    shelved_image = models.UUIDField(null=True, blank=True)
    shelved_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)

    objects = ChangeLocking.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "vm_state"]),
            models.Index(fields=["host", "vm_state"]),
            models.Index(fields=["task_deadline"]),
            # The server list's default order (newest first), per project and for all projects: a page
            # reads its rows in order and stops, however many servers there are.
            models.Index(
                F("project"),
                F("created_at").desc(nulls_last=True),
                F("id").desc(nulls_last=True),
                name="instance_newest_in_project",
            ),
            models.Index(F("created_at").desc(nulls_last=True), F("id").desc(nulls_last=True), name="instance_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.uuid})"

    @property
    def domain_name(self) -> str:
        return f"instance-{self.uuid}"


class InstanceFault(models.Model):
    """Why an instance went wrong, shown as the server's ``fault`` while it is in ERROR."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="faults")
    code = models.PositiveSmallIntegerField(default=500)
    message = models.CharField(max_length=255)
    details = models.TextField(blank=True, default="")
    host = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InstanceAction(models.Model):
    """One user request against an instance (create, stop, reboot, …), with its events."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="actions")
    action = models.CharField(max_length=32)
    request_id = models.CharField(max_length=64, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL)
    message = models.CharField(max_length=255, blank=True, null=True)
    start_time = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start_time", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.request_id}"


class InstanceActionEvent(models.Model):
    """A step of an action, written by the one writer of instance state."""

    action = models.ForeignKey(InstanceAction, on_delete=models.CASCADE, related_name="events")
    event = models.CharField(max_length=64)
    start_time = models.DateTimeField(auto_now_add=True)
    finish_time = models.DateTimeField(null=True, blank=True)
    result = models.CharField(max_length=16, blank=True, null=True)  # "Success" | "Error"
    host = models.CharField(max_length=255, blank=True, default="")
    details = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["start_time", "id"]

    def __str__(self) -> str:
        return f"{self.event}: {self.result}"


class InstanceTag(models.Model):
    """A tag on an instance (the servers API's ``tags``)."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="tags")
    tag = models.CharField(max_length=60)

    class Meta:
        ordering = ["tag"]
        constraints = [models.UniqueConstraint(fields=["instance", "tag"], name="one_tag_per_instance")]
        indexes = [models.Index(fields=["tag"])]

    def __str__(self) -> str:
        return self.tag
