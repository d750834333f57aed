"""Key pair reads: a user's own key pairs (admins may name another user)."""

from __future__ import annotations

from django.db.models import QuerySet

from portal.models import Keypair

from .users import user_by_api_id


def keypair_owner(user_id: str):
    """The user a ``user_id`` from the API names, or None."""
    return user_by_api_id(user_id)


def keypairs_of(user) -> QuerySet:
    return Keypair.objects.filter(user=user).select_related("user").order_by("name", "id")


def keypair_get(user, name: str) -> Keypair | None:
    return Keypair.objects.filter(user=user, name=name).first()
