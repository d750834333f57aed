"""Key pair reads: a user's own key pairs (admins may name another user)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from portal.models import Keypair


def keypair_owner(user_id: str):
    """The user a ``user_id`` from the API names, or None."""
    if not str(user_id).isdigit():
        return None
    return get_user_model().objects.filter(pk=int(user_id)).first()


def keypairs_of(user) -> QuerySet:
    return Keypair.objects.filter(user=user).order_by("name", "id")


def keypair_get(user, name: str) -> Keypair | None:
    return Keypair.objects.filter(user=user, name=name).first()
