from django.db import models
from django.utils import timezone


class FailedSignIn(models.Model):
    """A password check, by user name from a client address, that failed: what the sign-in throttle
    counts. Rows older than its window no longer count; the conductor purges them."""

    username = models.CharField(max_length=255)
    address = models.CharField(max_length=64)  # an IPv4 address, or the /64 prefix of an IPv6 one
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["username", "at"], name="failed_sign_in_by_user"),
            models.Index(fields=["address", "at"], name="failed_sign_in_by_address"),
        ]

    def __str__(self) -> str:
        return f"{self.username} from {self.address} at {self.at:%Y-%m-%d %H:%M:%S}"
