import uuid

from django.db import models

from .locking import ChangeLocking


class LiveHosts(models.Manager.from_queryset(ChangeLocking)):
    def get_queryset(self):
        return super().get_queryset().filter(deleted_at__isnull=True)


class ComputeHost(models.Model):
    """A hypervisor host and its compute service, as its heartbeats describe it.

    A deleted host (``DELETE /os-services/{id}``) keeps its row, so the servers and migrations that were
    once on it still name it, but ``objects`` no longer finds it: not the scheduler, not the listings, not
    its own messages (its key is revoked). Enrolled again, it comes back as a new row of the same name."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=255)
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
    # Where the host's VXLAN endpoint listens and which flat networks it can plug, as its heartbeat says.
    tunnel_address = models.CharField(max_length=64, blank=True, default="")
    physical_networks = models.JSONField(default=list, blank=True)
    # An operator's word, never a host's: routers (and so other projects' routed traffic) run only on
    # hosts trusted with them (``manage.py host_enroll --routers``, or the admin).
    runs_routers = models.BooleanField(default=False)
    # The one address its consoles may be reached at, set when an operator enrolled it: a host cannot
    # point a console (and so the console proxy) anywhere else.
    console_address = models.CharField(max_length=255, default="127.0.0.1")
    # What the host really uses, as its newest heartbeat said (None: it cannot tell); the allocations are
    # the instances' flavors.
    cpu_used_percent = models.FloatField(null=True, blank=True)
    memory_used_mb = models.PositiveBigIntegerField(null=True, blank=True)
    # The signing time of the newest heartbeat believed; an older one is a replay.
    last_beat_signed_at = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = LiveHosts()  # related objects (``instance.host``) still find a deleted host

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], condition=models.Q(deleted_at__isnull=True), name="host_name_live")
        ]

    def __str__(self) -> str:
        return self.name


class HostCredential(models.Model):
    """The public half of an enrolled host's signing key: what every message from the host is checked
    against. A host has at most one that is not revoked; revoked ones stay for the record."""

    host = models.ForeignKey(ComputeHost, on_delete=models.CASCADE, related_name="credentials")
    public_key = models.CharField(max_length=64, unique=True)  # raw Ed25519, base64
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["host"], condition=models.Q(revoked_at__isnull=True), name="one_active_credential_per_host"
            )
        ]

    def __str__(self) -> str:
        return f"{self.host.name} {self.fingerprint}{' (revoked)' if self.revoked_at else ''}"


class MessageRefusal(models.Model):
    """Messages the conductor did not believe, counted by who they claimed to come from, the task and why.

    The sender is as claimed and may be a lie; names nobody enrolled are counted under ``(unknown)`` so that
    an attacker inventing names cannot grow the table."""

    class Reason(models.TextChoices):
        UNSIGNED = "unsigned", "not signed"
        UNKNOWN_SENDER = "unknown-sender", "unknown or revoked sender"
        BAD_SIGNATURE = "bad-signature", "signature does not match"
        MISADDRESSED = "misaddressed", "addressed elsewhere"
        STALE = "stale", "too old or from the future"
        REPLAY = "replay", "already acted on"
        NOT_ITS_OWN = "not-its-own", "about another host or its instances"
        NOT_ALLOWED = "not-allowed", "not a message this sender may send"

    sender = models.CharField(max_length=255)
    task = models.CharField(max_length=255)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    count = models.PositiveBigIntegerField(default=0)
    first_at = models.DateTimeField(auto_now_add=True)
    last_at = models.DateTimeField()
    last_detail = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-last_at"]
        constraints = [models.UniqueConstraint(fields=["sender", "task", "reason"], name="one_refusal_row")]

    def __str__(self) -> str:
        return f"{self.count} × {self.task} from {self.sender}: {self.get_reason_display()}"


class SeenMessage(models.Model):
    """The nonce of a signed message the conductor acted on, kept while such a message would be believed."""

    nonce = models.CharField(max_length=64, primary_key=True)
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.nonce


class HostSample(models.Model):
    """One minute of a host, for the admins' host graphs: what is allocated of it, what it really uses (as
    its newest heartbeat said), its instances and how old that heartbeat was.

    A ring, not a log: ``slot`` is the minute of the day (0-1439) and each host has at most one row per
    slot, overwritten a day later, so the table never holds more than a day of 1,440 rows per host."""

    SLOTS = 1440
    STEP_SECONDS = 60

    host = models.ForeignKey(ComputeHost, on_delete=models.CASCADE, related_name="samples")
    slot = models.PositiveSmallIntegerField()
    at = models.DateTimeField()
    vcpus = models.PositiveIntegerField(default=0)
    vcpus_used = models.PositiveIntegerField(default=0)
    memory_mb = models.PositiveBigIntegerField(default=0)
    memory_mb_used = models.PositiveBigIntegerField(default=0)  # allocated, the host's reserve included
    cpu_used_percent = models.FloatField(null=True, blank=True)
    memory_used_mb = models.PositiveBigIntegerField(null=True, blank=True)  # really in use, as the host says
    instances = models.PositiveIntegerField(default=0)
    heartbeat_age_seconds = models.FloatField(null=True, blank=True)  # None: the host never beat

    class Meta:
        ordering = ["host", "at"]
        constraints = [models.UniqueConstraint(fields=["host", "slot"], name="one_sample_per_host_and_slot")]

    def __str__(self) -> str:
        return f"{self.host.name} at {self.at:%Y-%m-%d %H:%M}"
