"""The JSON of the identity API v3, for the cloud's one domain, three roles, projects and users.

Ids: a user's id is their user name (as the compute API shows ``user_id``), a project's its own id, the
domain's ``default``, a role's its name. Keystone's implied roles are spelled out: an admin is also member
and reader, a member also reader.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist

from portal.models import ApplicationCredential, Project, Role
from portal.services.identity_tokens import ROLE_ORDER, TokenRecord

DOMAIN_ID = "default"
DOMAIN_NAME = "Default"
DOMAIN = {"id": DOMAIN_ID, "name": DOMAIN_NAME}
ROLE_DESCRIPTIONS = {
    Role.READER: "Reads the project's resources.",
    Role.MEMBER: "Creates and changes the project's resources.",
    Role.ADMIN: "Administers the whole cloud.",
}
API_VERSION = "v3.14"
VERSION_UPDATED = "2020-04-07T00:00:00Z"
MEDIA_TYPE = "application/vnd.openstack.identity-v3+json"


def identity_url() -> str:
    return f"{settings.CLOUD['PUBLIC_URL']}/identity"


def v3_url(path: str = "") -> str:
    return f"{identity_url()}/v3{path}"


def timestamp(moment: datetime | None) -> str | None:
    """Keystone's way of writing a time: UTC, microseconds, ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version(status: str = "stable") -> dict:
    return {
        "id": API_VERSION,
        "status": status,
        "updated": VERSION_UPDATED,
        "links": [{"rel": "self", "href": f"{v3_url()}/"}],
        "media-types": [{"base": "application/json", "type": MEDIA_TYPE}],
    }


def implied_roles(role: str | None) -> list[str]:
    """The role and those it implies, strongest first."""
    if role is None:
        return []
    return list(reversed(ROLE_ORDER[: ROLE_ORDER.index(role) + 1]))


def role_ref(name: str) -> dict:
    return {"id": name, "name": name}


def role(name: str) -> dict:
    return {
        "id": name,
        "name": name,
        "domain_id": None,
        "description": ROLE_DESCRIPTIONS[name],
        "options": {},
        "links": {"self": v3_url(f"/roles/{name}")},
    }


def domain() -> dict:
    return {
        **DOMAIN,
        "description": "The cloud's users and projects.",
        "enabled": True,
        "tags": [],
        "options": {},
        "links": {"self": v3_url(f"/domains/{DOMAIN_ID}")},
    }


def project(p: Project) -> dict:
    return {
        "id": p.pk,
        "name": p.name,
        "description": p.description,
        "domain_id": DOMAIN_ID,
        "enabled": p.enabled,
        "is_domain": False,
        "parent_id": DOMAIN_ID,
        "tags": [],
        "options": {},
        "links": {"self": v3_url(f"/projects/{p.pk}")},
    }


def user(u) -> dict:
    """A user; ``email``, ``description`` and ``default_project_id`` only when set, as Keystone shows them."""
    body = {
        "id": u.get_username(),
        "name": u.get_username(),
        "domain_id": DOMAIN_ID,
        "enabled": u.is_active,
        "password_expires_at": None,
        "options": {},
        "links": {"self": v3_url(f"/users/{u.get_username()}")},
    }
    if u.email:
        body["email"] = u.email
    try:
        identity = u.identity
    except ObjectDoesNotExist:
        identity = None
    if identity is not None:
        if identity.description:
            body["description"] = identity.description
        if identity.default_project_id:
            body["default_project_id"] = identity.default_project_id
    return body


def catalog(project_id: str) -> list[dict]:
    """This cloud's services for a token scoped to ``project_id``: identity, compute, image, network and, with a
    Cinder configured, block storage. Every interface has the same URL."""
    public = settings.CLOUD["PUBLIC_URL"]
    services = [
        ("identity", "keystone", identity_url()),
        ("compute", "nova", f"{public}/compute/v2.1"),
        ("image", "glance", f"{public}/image"),
        ("network", "neutron", f"{public}/networking"),
    ]
    cinder = settings.CINDER["ENDPOINT"]
    if cinder:
        services.append(("block-storage", "cinder", f"{cinder}/{project_id}"))
    region = settings.IDENTITY["REGION_NAME"]
    entries = []
    for service_type, name, url in services:
        service_id = uuid.uuid5(uuid.NAMESPACE_URL, f"service:{service_type}").hex
        endpoints = [
            {
                "id": uuid.uuid5(uuid.NAMESPACE_URL, f"endpoint:{service_type}:{interface}").hex,
                "interface": interface,
                "region": region,
                "region_id": region,
                "url": url,
            }
            for interface in ("public", "internal", "admin")
        ]
        entries.append({"id": service_id, "type": service_type, "name": name, "endpoints": endpoints})
    return entries


def application_credential(c: ApplicationCredential, secret: str | None = None) -> dict:
    body = {
        "id": c.pk,
        "name": c.name,
        "description": c.description or None,
        "expires_at": timestamp(c.expires_at),
        "project_id": c.project_id,
        "user_id": c.user.get_username(),
        "roles": [{**role_ref(r), "domain_id": None} for r in implied_roles(c.role)],
        "unrestricted": c.unrestricted,
        "access_rules": [],
        "links": {"self": v3_url(f"/users/{c.user.get_username()}/application_credentials/{c.pk}")},
    }
    if secret is not None:
        body["secret"] = secret
    return body


def token(
    record: TokenRecord,
    *,
    user,
    project: Project | None,
    role: str | None,
    credential: ApplicationCredential | None = None,
    with_catalog: bool = True,
) -> dict:
    body = {
        "methods": list(record.methods),
        "user": {
            "id": user.get_username(),
            "name": user.get_username(),
            "domain": DOMAIN,
            "password_expires_at": None,
        },
        "audit_ids": [record.audit_id],
        "issued_at": timestamp(record.issued_at),
        "expires_at": timestamp(record.expires_at),
    }
    if project is not None:
        body["project"] = {"id": project.pk, "name": project.name, "domain": DOMAIN}
        body["is_domain"] = False
        body["roles"] = [role_ref(r) for r in implied_roles(role)]
        if with_catalog:
            body["catalog"] = catalog(project.pk)
    elif record.domain_scoped:
        body["domain"] = DOMAIN
        body["roles"] = [role_ref(r) for r in implied_roles(role)]
        if with_catalog:
            body["catalog"] = []
    if credential is not None:
        body["application_credential"] = {
            "id": credential.pk,
            "name": credential.name,
            "restricted": not credential.unrestricted,
        }
    return {"token": body}
