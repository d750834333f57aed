import hashlib

from django.conf import settings
from django.db import models

from .identity import Project


def secret_hash(secret: str) -> str:
    """The SHA-256 of a random secret (a token or an application credential's): all that is stored of it."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApplicationCredential(models.Model):
    """A secret a user made for a program: it signs in as that user, in one project, with at most the
    role the user had there when it was made (and never more than the role they have now)."""

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="application_credentials")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="application_credentials")
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    role = models.CharField(max_length=16)
    secret_hash = models.CharField(max_length=64)
    unrestricted = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="application_credential_name_per_user")]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"application credential {self.name} of {self.user}"


class IdentityToken(models.Model):
    """A token of the built-in identity API. Only the SHA-256 of the token is stored.

    Scoped to a project (``project`` set), to the one domain (``domain_scoped``), or to nothing. A revoked
    token keeps its row until it expires, so that revocation is remembered.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    audit_id = models.CharField(max_length=32)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="identity_tokens")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="identity_tokens"
    )
    domain_scoped = models.BooleanField(default=False)
    application_credential = models.ForeignKey(
        ApplicationCredential, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens"
    )
    methods = models.CharField(max_length=64)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]
        indexes = [models.Index(fields=["user", "project"], name="identity_token_by_principal")]

    def __str__(self) -> str:
        return f"token {self.audit_id} of {self.user} until {self.expires_at:%Y-%m-%d %H:%M:%S}"
