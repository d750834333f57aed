"""Flavor writes: create, describe, delete, extra specs, and which projects may use a private flavor."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from django.db import IntegrityError, transaction

from portal.models import Flavor, FlavorAccess, Project

from .extra_specs import extra_specs_validate


class FlavorConflict(Exception):
    """The flavor's name or id is taken, or an access entry already exists (the API answers 409)."""


class FlavorAccessNotFound(Exception):
    """The project has no access entry on the flavor (the API answers 404)."""


class ExtraSpecNotFound(KeyError):
    """The flavor has no extra spec with that key (the API answers 404)."""


def flavor_create(
    *,
    name: str,
    vcpus: int,
    memory_mb: int,
    root_gb: int,
    flavorid: str | None = None,
    ephemeral_gb: int = 0,
    swap: int = 0,
    rxtx_factor: float = 1.0,
    is_public: bool = True,
    description: str | None = None,
) -> Flavor:
    """A new flavor; without ``flavorid`` it gets a random UUID as its id."""
    flavorid = str(flavorid) if flavorid not in (None, "") else str(uuid.uuid4())
    name = name.strip()
    try:
        with transaction.atomic():
            if Flavor.objects.filter(name=name).exists():
                raise FlavorConflict(f"Flavor with name {name} already exists.")
            if Flavor.objects.filter(flavorid=flavorid).exists():
                raise FlavorConflict(f"Flavor with ID {flavorid} already exists.")
            return Flavor.objects.create(
                flavorid=flavorid,
                name=name,
                vcpus=vcpus,
                memory_mb=memory_mb,
                root_gb=root_gb,
                ephemeral_gb=ephemeral_gb,
                swap=swap,
                rxtx_factor=rxtx_factor,
                is_public=is_public,
                description=description,
            )
    except IntegrityError:
        # Another request created the same name or id between our check and our insert.
        raise FlavorConflict(f"Flavor with name {name} or ID {flavorid} already exists.") from None


def flavor_update(*, flavor: Flavor, description: str | None) -> Flavor:
    """Set the flavor's description (the only mutable field the compute API offers)."""
    with transaction.atomic():
        Flavor.objects.filter(pk=flavor.pk).update(description=description)
    flavor.description = description
    return flavor


def flavor_delete(*, flavor: Flavor) -> None:
    """Remove the flavor; instances keep the sizes they were built with."""
    with transaction.atomic():
        Flavor.objects.filter(pk=flavor.pk).delete()


def flavor_extra_specs_set(*, flavor: Flavor, specs: Mapping[str, str], strict: bool = False) -> dict[str, str]:
    """Add or replace extra specs (values checked against the rules of the keys the API knows)."""
    extra_specs_validate(specs, strict=strict)
    with transaction.atomic():
        locked = Flavor.objects.select_for_update().get(pk=flavor.pk)
        locked.extra_specs = {**locked.extra_specs, **specs}
        locked.save(update_fields=["extra_specs"])
    flavor.extra_specs = locked.extra_specs
    return locked.extra_specs


def flavor_extra_spec_delete(*, flavor: Flavor, key: str) -> None:
    with transaction.atomic():
        locked = Flavor.objects.select_for_update().get(pk=flavor.pk)
        if key not in locked.extra_specs:
            raise ExtraSpecNotFound(key)
        del locked.extra_specs[key]
        locked.save(update_fields=["extra_specs"])
    flavor.extra_specs = locked.extra_specs


def flavor_access_add(*, flavor: Flavor, project: Project, allow_public: bool = False) -> None:
    """Let ``project`` use the private ``flavor`` (before microversion 2.7 a public one could be given too)."""
    if flavor.is_public and not allow_public:
        raise FlavorConflict("Can not add access to a public flavor.")
    try:
        with transaction.atomic():
            _, created = FlavorAccess.objects.get_or_create(flavor=flavor, project=project)
    except IntegrityError:
        created = False
    if not created:
        raise FlavorConflict(
            f"Flavor access already exists for flavor {flavor.flavorid} and project {project.pk} combination."
        )


def flavor_access_remove(*, flavor: Flavor, project_id: str) -> None:
    with transaction.atomic():
        deleted, _ = FlavorAccess.objects.filter(flavor=flavor, project_id=project_id).delete()
    if not deleted:
        raise FlavorAccessNotFound(f"Flavor access not found for {flavor.flavorid} / {project_id} combination.")
