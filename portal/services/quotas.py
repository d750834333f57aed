"""Quota enforcement and the writes that change limits.

Enforcement runs inside the creating transaction, after a row lock that every creator of the same
resource takes: the project's row for instances, cores, RAM and server groups, the user's row for key
pairs, the group's row for its members. Usage is then counted under the lock, so two concurrent
requests can never both see the last free slot.

Callers (the create paths of instances, key pairs, server groups) call ``quota_check`` (or
``instance_quota_check``) inside their ``transaction.atomic()`` before they insert, and let
``QuotaExceeded`` propagate: the API answers 403 with its message, and the transaction rolls back.
The image service calls ``image_quota_check`` the same way, when it creates an image and when an
upload's data is about to become the image's (the image API answers 413 there, as Glance does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.contrib.auth import get_user_model
from django.db import transaction

from portal.models import Project, QuotaClassLimit, QuotaLimit, ServerGroup
from portal.selectors import quotas as selectors
from portal.selectors.quotas import UNLIMITED
from portal.selectors.rows import CompiledQuery

MAX_LIMIT = 0x7FFFFFFF
PROJECT_ONLY = selectors.PROJECT_ONLY


class QuotaExceeded(Exception):
    """A create would go over a limit; the message is the compute API's (the API answers 403)."""


class InvalidQuota(Exception):
    """A limit that cannot be set (below what is in use, above the project's, not a resource)."""


def _over(limit: int, used: int, delta: int) -> bool:
    return limit != UNLIMITED and used + delta > limit


def _lock_project(project: Project) -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("quota checks must run inside the transaction that creates the resource")
    if not _PROJECT_LOCK.rows("lock", pk=project.pk):
        raise Project.DoesNotExist(f"project {project.pk} does not exist")


# NO KEY UPDATE: quota checks of a project wait for each other, but not the foreign-key checks of rows
# that refer to the project (an instance's actions and events, written by other transactions meanwhile).
_PROJECT_LOCK = CompiledQuery(
    lambda _shape, *, pk: Project.objects.select_for_update(no_key=True).filter(pk=pk).values_list("pk")
)


def instance_quota_check(*, project: Project, user, instances: int = 1, cores: int = 0, ram: int = 0) -> None:
    """Room for ``instances`` more instances with ``cores`` vCPUs and ``ram`` MB in total, or QuotaExceeded.

    Checks the project's limits against the project's usage and, where the user has limits of their
    own, those against the user's usage. Locks the project row for the rest of the transaction.
    """
    _lock_project(project)
    deltas = {"instances": instances, "cores": cores, "ram": ram}
    if user is None:
        limits, own = selectors.project_limits(project), {}
    else:
        limits, own = selectors.project_and_own_limits(project, user)
    _check_instances(limits, selectors.instance_usage(project), deltas)
    if any(resource in own for resource in deltas):
        _check_instances(own, selectors.instance_usage(project, user), deltas)


def _check_instances(limits: Mapping[str, int], used: Mapping[str, int], deltas: Mapping[str, int]) -> None:
    overs = sorted(r for r, d in deltas.items() if d > 0 and r in limits and _over(limits[r], used[r], d))
    if overs:
        names = ", ".join(overs)
        raise QuotaExceeded(
            f"Quota exceeded for {names}: Requested {', '.join(str(deltas[r]) for r in overs)}, "
            f"but already used {', '.join(str(used[r]) for r in overs)} "
            f"of {', '.join(str(limits[r]) for r in overs)} {names}"
        )


def quota_check(*, project: Project, user, resource: str, delta: int = 1, group: ServerGroup | None = None) -> None:
    """Room for ``delta`` more of ``resource``, or QuotaExceeded. Call it inside the creating transaction.

    - ``key_pairs``: the user's key pairs (locks the user's row);
    - ``server_groups``: the project's groups, and the user's where they have a limit of their own;
    - ``server_group_members``: the members of ``group`` (locks the group's row);
    - ``metadata_items``: ``delta`` is the number of items one server's metadata will have;
    - ``instances``, ``cores``, ``ram``: as ``instance_quota_check``.
    """
    if resource not in selectors.ENFORCED_DEFAULTS:
        raise ValueError(f"{resource!r} is not a quota resource this cloud enforces")
    if delta <= 0:
        return
    if resource in ("instances", "cores", "ram"):
        instance_quota_check(project=project, user=user, **{resource: delta})
        return
    limit = selectors.user_limits(project, user)[resource] if user is not None else None
    if limit is None:
        limit = selectors.project_limits(project)[resource]
    if resource == "metadata_items":
        if _over(limit, 0, delta):
            raise QuotaExceeded(f"Quota exceeded for metadata items: maximum number of metadata items exceeds {limit}")
        return
    if resource == "key_pairs":
        _lock_project(project)
        get_user_model().objects.select_for_update().only("pk").get(pk=user.pk)
        if _over(limit, selectors.keypair_count(user), delta):
            raise QuotaExceeded("Quota exceeded, too many key pairs.")
        return
    if resource == "server_groups":
        _lock_project(project)
        project_limit = selectors.project_limits(project)["server_groups"]
        if _over(project_limit, selectors.server_group_count(project), delta):
            raise QuotaExceeded("Quota exceeded, too many server groups.")
        own = selectors.user_own_limits(project, user).get("server_groups") if user is not None else None
        if own is not None and _over(own, selectors.server_group_count(project, user), delta):
            raise QuotaExceeded("Quota exceeded, too many server groups.")
        return
    if resource == "server_group_members":
        if group is None:
            raise ValueError("server_group_members needs the group")
        ServerGroup.objects.select_for_update().only("pk").get(pk=group.pk)
        if _over(limit, selectors.server_group_member_count(group), delta):
            raise QuotaExceeded("Quota exceeded, too many servers in group")
        return


def personality_quota_check(*, project: Project, user, files: Sequence[Mapping[str, str]]) -> None:
    """The personality files of one server within ``injected_files`` (their number) and, for the longest
    path and the longest contents (base64, as given), ``injected_file_path_bytes`` and
    ``injected_file_content_bytes``, or QuotaExceeded with Nova's message. A user's own limit counts
    where set, else the project's. Nothing is counted: the limits are per server."""
    if not files:
        return
    limits = selectors.user_limits(project, user) if user is not None else selectors.project_limits(project)
    if _over(limits["injected_files"], 0, len(files)):
        raise QuotaExceeded("Personality file limit exceeded")
    path_limit = limits["injected_file_path_bytes"]
    if _over(path_limit, 0, max(len(f["path"]) for f in files)):
        raise QuotaExceeded(f"Personality file path exceeds maximum {path_limit}")
    content_limit = limits["injected_file_content_bytes"]
    if _over(content_limit, 0, max(len(f["contents"]) for f in files)):
        raise QuotaExceeded(f"Personality file content exceeds maximum {content_limit}")


def image_quota_check(*, project: Project, images: int = 0, size: int = 0) -> None:
    """Room in the project for ``images`` more images and ``size`` more bytes of image data, or
    QuotaExceeded. Locks the project row for the rest of the transaction."""
    _lock_project(project)
    limits = selectors.project_limits(project)
    used = selectors.image_usage(project)
    count_limit = limits["image_count_total"]
    if images > 0 and _over(count_limit, used["image_count_total"], images):
        raise QuotaExceeded(
            f"Resource image_count_total is over limit of {count_limit} due to current usage "
            f"{used['image_count_total']} and delta {images}"
        )
    size_limit = limits["image_size_total"]
    if size > 0 and size_limit != UNLIMITED and used["image_size_total"] + size > size_limit * selectors.MIB:
        raise QuotaExceeded(
            f"Resource image_size_total is over limit of {size_limit} MiB due to current usage "
            f"{used['image_size_total']} bytes and delta {size} bytes"
        )


def network_quota_check(*, project: Project, resource: str, delta: int = 1) -> None:
    """Room in the project for ``delta`` more networks, subnets or ports, or QuotaExceeded (whose message
    is the resource's name). Locks the project row for the rest of the transaction."""
    if resource not in selectors.NETWORK_DEFAULTS:
        raise ValueError(f"{resource!r} is not a network quota resource")
    _lock_project(project)
    limit = selectors.project_limits(project)[resource]
    if delta > 0 and _over(limit, selectors.network_usage(project)[resource], delta):
        raise QuotaExceeded(resource)


# --- limits ------------------------------------------------------------------------------------------


def _validated(values: Mapping[str, int]) -> dict[str, int]:
    clean = {}
    for resource, value in values.items():
        if resource not in selectors.BUILTIN_DEFAULTS:
            raise InvalidQuota(f"{resource} is not a quota resource.")
        if isinstance(value, bool) or not isinstance(value, int) or not UNLIMITED <= value <= MAX_LIMIT:
            raise InvalidQuota(f"Quota limit {value} for {resource} must be -1 or between 0 and {MAX_LIMIT}.")
        clean[resource] = value
    return clean


def _as_inf(value: int) -> float:
    return float("inf") if value == UNLIMITED else value


def quota_set_update(*, project: Project, values: Mapping[str, int], user=None, force: bool = False) -> dict:
    """Set the project's limits (or one user's within it); returns the limits now in force.

    Without ``force`` a limit may not go below what is in use, and a user's limit may not exceed the
    project's. All values are checked before any is written.
    """
    clean = _validated(values)
    if user is not None:
        bad = sorted(PROJECT_ONLY & clean.keys())
        if bad:
            raise InvalidQuota(f"Quota {', '.join(bad)} can only be set per project, not per user.")
    with transaction.atomic():
        _lock_project(project)
        if not force:
            used = selectors.usage(project, user, keypair_owner=user)
            ceiling = selectors.project_limits(project) if user is not None else {}
            for resource, value in clean.items():
                minimum = used.get(resource, 0)
                if _as_inf(value) < _as_inf(minimum):
                    raise InvalidQuota(
                        f"Quota limit {value} for {resource} must be greater than or equal to already used "
                        f"and reserved {minimum}."
                    )
                maximum = ceiling.get(resource, UNLIMITED)
                if _as_inf(value) > _as_inf(maximum):
                    raise InvalidQuota(f"Quota limit {value} for {resource} must be less than or equal to {maximum}.")
        for resource, value in clean.items():
            QuotaLimit.objects.update_or_create(
                project=project, user=user, resource=resource, defaults={"hard_limit": value}
            )
    return selectors.user_limits(project, user) if user is not None else selectors.project_limits(project)


def quota_set_delete(*, project: Project, user=None) -> int:
    """Back to the defaults: the user's own limits, or every limit of the project (its users' too)."""
    with transaction.atomic():
        rows = QuotaLimit.objects.filter(project=project)
        if user is not None:
            rows = rows.filter(user=user)
        deleted, _ = rows.delete()
    return deleted


def network_quota_update(*, project: Project, values: Mapping[str, int], check_limit: bool = False) -> dict[str, int]:
    """Set the project's network limits (``network``, ``subnet``, ``port``); with ``check_limit`` none may go
    below what the project uses. Returns the network limits now in force."""
    bad = sorted(set(values) - set(selectors.NETWORK_DEFAULTS))
    if bad:
        raise InvalidQuota(f"Unrecognized attribute(s) '{', '.join(b[:64] for b in bad)}'")
    clean = _validated(values)
    with transaction.atomic():
        _lock_project(project)
        if check_limit:
            used = selectors.network_usage(project)
            for resource, value in clean.items():
                if _as_inf(value) < used[resource]:
                    raise InvalidQuota(
                        f"Quota limit {value} for {resource} must be greater than or equal to already used and "
                        f"reserved {used[resource]}."
                    )
        for resource, value in clean.items():
            QuotaLimit.objects.update_or_create(
                project=project, user=None, resource=resource, defaults={"hard_limit": value}
            )
    limits = selectors.project_limits(project)
    return {r: limits[r] for r in selectors.NETWORK_DEFAULTS}


def network_quota_reset(*, project: Project) -> None:
    """The project's network limits back to the defaults (its compute and image limits stay)."""
    with transaction.atomic():
        QuotaLimit.objects.filter(project=project, resource__in=list(selectors.NETWORK_DEFAULTS)).delete()


def quota_class_update(*, class_name: str, values: Mapping[str, int]) -> dict[str, int]:
    """Set limits of a quota class; the ``default`` class is what projects without their own get."""
    if not 1 <= len(class_name) <= 255:
        raise InvalidQuota("quota_class_name has to be between 1 and 255 characters long.")
    clean = _validated(values)
    with transaction.atomic():
        for resource, value in clean.items():
            QuotaClassLimit.objects.update_or_create(
                class_name=class_name, resource=resource, defaults={"hard_limit": value}
            )
    return selectors.class_limits(class_name)


def quota_limit_remove(*, project: Project, resource: str, user=None) -> None:
    """Drop one limit of a project (or of a user in it): the next level's applies again."""
    with transaction.atomic():
        QuotaLimit.objects.filter(project=project, user=user, resource=resource).delete()


def quota_class_limit_remove(*, class_name: str, resource: str) -> None:
    with transaction.atomic():
        QuotaClassLimit.objects.filter(class_name=class_name, resource=resource).delete()
