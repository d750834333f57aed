"""Users as the APIs name them: a user's id is its user name, which for a user who came from Keystone is
its Keystone user id (``portal.services.identity``), so ids the clients got from Keystone work here."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser


def api_user_id(user: AbstractBaseUser | None) -> str | None:
    return user.get_username() if user is not None else None


def user_by_api_id(user_id: str | None) -> AbstractBaseUser | None:
    """The user an API ``user_id`` names, or None."""
    if not user_id:
        return None
    return get_user_model().objects.filter(username=str(user_id)).first()
