import hashlib

from django.conf import settings
from django.db import models

from .instance import Instance


class ConsoleToken(models.Model):
    """A short-lived right to one instance's screen. Only the SHA-256 of the token is stored.

    It holds no VNC address: the screen moves when QEMU restarts, so the address is the instance's own,
    read when the proxy connects.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="console_tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_tokens")
    console_type = models.CharField(max_length=16, default="novnc")
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.console_type} console for {self.instance_id} until {self.expires_at:%Y-%m-%d %H:%M:%S}"

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


class ConsoleSession(models.Model):
    """A browser connected to an instance's screen through the console proxy."""

    token = models.ForeignKey(ConsoleToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="console_sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_sessions")
    client = models.CharField(max_length=255, blank=True, default="")
    opened_at = models.DateTimeField(auto_now_add=True)
    # The proxy checks in every few seconds while the session is open; a session not seen for long
    # lost its proxy and no longer counts as open.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_requested = models.BooleanField(default=False)
    closed_reason = models.CharField(max_length=255, blank=True, default="")
    # The instance's action log entry that records the session's opening and end.
    action = models.ForeignKey(
        "portal.InstanceAction", null=True, blank=True, on_delete=models.SET_NULL, related_name="console_sessions"
    )

    class Meta:
        ordering = ["-opened_at", "-id"]

    def __str__(self) -> str:
        return f"console of {self.instance_id} for {self.user_id} since {self.opened_at:%Y-%m-%d %H:%M:%S}"
