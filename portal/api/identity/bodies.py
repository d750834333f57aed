"""The bodies of the identity API's writes, checked as Keystone's schemas check them: known fields must have
the right type (400 otherwise); other fields are ignored, as Keystone keeps them as extras."""

from __future__ import annotations

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError

from portal.models import Project

from .errors import ValidationFailed
from .shapes import DOMAIN_ID

USER_NAME_MAX = 150  # Django's; a user's name is also their id here
PROJECT_NAME_MAX = 64  # Keystone's
PASSWORD_MAX = 4096


def wrapped(data, key: str) -> dict:
    """``{"project": {...}}``'s inner object."""
    body = data.get(key) if isinstance(data, dict) else None
    if not isinstance(body, dict):
        raise ValidationFailed(f"Expecting to find {key} in the request body.")
    return body


def name(body: dict, key: str, *, required: bool, longest: int):
    if key not in body:
        if required:
            raise ValidationFailed(f"Invalid input for field '{key}': it is a required property.")
        return None
    value = body[key]
    if not isinstance(value, str) or not value.strip() or len(value) > longest or value != value.strip():
        raise ValidationFailed(
            f"Invalid input for field '{key}': expecting a string of 1 to {longest} characters, "
            "without leading or trailing blanks."
        )
    if "/" in value or any(ord(c) < 32 for c in value):
        raise ValidationFailed(f"Invalid input for field '{key}': '/' and control characters are not allowed.")
    return value


def user_name(body: dict, *, required: bool):
    """A user's name, which is their id: what Django's user names allow (letters, digits, ``@.+-_``)."""
    value = name(body, "name", required=required, longest=USER_NAME_MAX)
    if value is not None:
        try:
            UnicodeUsernameValidator()(value)
        except ValidationError:
            raise ValidationFailed(
                "Invalid input for field 'name': a user name here holds letters, digits and @ . + - _ only."
            ) from None
    return value


def text(body: dict, key: str, *, longest: int = 65535):
    """An optional string (null counts as empty); None when absent."""
    if key not in body:
        return None
    value = body[key]
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > longest or "\x00" in value:
        raise ValidationFailed(f"Invalid input for field '{key}': expecting a string of at most {longest} characters.")
    return value


def flag(body: dict, key: str):
    if key not in body:
        return None
    if not isinstance(body[key], bool):
        raise ValidationFailed(f"Invalid input for field '{key}': expecting a boolean.")
    return body[key]


def domain(body: dict) -> None:
    """The one domain; any other is refused as Keystone refuses an unknown domain."""
    if "domain_id" not in body or body["domain_id"] is None:
        return
    if not isinstance(body["domain_id"], str):
        raise ValidationFailed("Invalid input for field 'domain_id': expecting a string.")
    if body["domain_id"] != DOMAIN_ID:
        raise ValidationFailed(f"Could not find domain: {body['domain_id'][:64]} (this cloud has one, default).")


def refuse_project_hierarchy(body: dict) -> None:
    if body.get("is_domain"):
        raise ValidationFailed("Projects acting as domains are not offered by this cloud.")
    parent = body.get("parent_id")
    if parent is not None and parent != DOMAIN_ID:
        raise ValidationFailed("Project hierarchies are not offered by this cloud: parent_id must be the domain.")


def password(body: dict):
    """The password as given (None: no password); the marker ``...`` when absent."""
    if "password" not in body:
        return ...
    value = body["password"]
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > PASSWORD_MAX or "\x00" in value:
        raise ValidationFailed(
            f"Invalid input for field 'password': expecting a string of 1 to {PASSWORD_MAX} characters."
        )
    return value


def email(body: dict):
    value = text(body, "email", longest=254)
    if value and ("@" not in value or any(c.isspace() for c in value)):
        raise ValidationFailed("Invalid input for field 'email': expecting an e-mail address.")
    return value


def default_project(body: dict):
    """The project named by ``default_project_id`` (``...`` when absent, None for null). ``project_id``, the
    older spelling Tempest's credential client still sends, counts as the same when it is alone."""
    key = "default_project_id" if "default_project_id" in body or "project_id" not in body else "project_id"
    if key not in body:
        return ...
    value = body[key]
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"Invalid input for field '{key}': expecting a string.")
    project = Project.objects.filter(pk=value[:64], deleted_at=None).first()
    if project is None:
        raise ValidationFailed(f"Invalid input for field '{key}': no project {value[:64]}.")
    return project
