"""Key pair writes: import a public key, or make a new key pair and hand its private key back once."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from portal.models import Keypair, Project

from . import key_material, quotas


class KeypairExists(Exception):
    """The user already has a key pair of that name (the API answers 409)."""


class InvalidKeypair(ValueError):
    """The public key is not a key of the pair's type (the API answers 400)."""


def _fingerprint(public_key: str, key_type: str) -> str:
    try:
        if key_type == Keypair.Type.X509:
            return key_material.x509_fingerprint(public_key)
        return key_material.ssh_fingerprint(public_key)
    except key_material.InvalidKey as exc:
        raise InvalidKeypair(f"Keypair data is invalid: {exc}") from None


def keypair_create(
    *, project: Project, user, name: str, key_type: str = Keypair.Type.SSH, public_key: str | None = None
) -> tuple[Keypair, str | None]:
    """Import ``public_key`` for ``user``, or generate a key pair when none is given.

    Returns the key pair and the private key (None for an import). The user's key pair quota is
    checked in the same transaction as the insert.
    """
    private_key = None
    if public_key is None:
        if key_type == Keypair.Type.X509:
            private_key, public_key, fingerprint = key_material.generate_x509_keypair(user.get_username())
        else:
            private_key, public_key, fingerprint = key_material.generate_ssh_keypair()
    else:
        fingerprint = _fingerprint(public_key, key_type)
    try:
        with transaction.atomic():
            quotas.quota_check(project=project, user=user, resource="key_pairs")
            if Keypair.objects.filter(user=user, name=name).exists():
                raise KeypairExists(f"Key pair '{name}' already exists.")
            keypair = Keypair.objects.create(
                user=user, name=name, type=key_type, public_key=public_key, fingerprint=fingerprint
            )
    except IntegrityError:
        raise KeypairExists(f"Key pair '{name}' already exists.") from None
    return keypair, private_key


def keypair_delete(*, keypair: Keypair) -> None:
    with transaction.atomic():
        Keypair.objects.filter(pk=keypair.pk).delete()
