from django.conf import settings
from django.db import models


class Keypair(models.Model):
    """A user's public key, injected into the instances they boot with it."""

    class Type(models.TextChoices):
        SSH = "ssh"
        X509 = "x509"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="keypairs")
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.SSH)
    public_key = models.TextField()
    fingerprint = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="keypair_name_per_user")]

    def __str__(self) -> str:
        return self.name
