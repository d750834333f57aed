"""Flavor reads: public flavors for everyone, private ones for the projects given access, all for admins."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from portal.auth.context import RequestContext
from portal.models import Flavor, FlavorAccess

from .rows import Columns, CompiledQuery, scoped_rows


def _accessible(project_id) -> Q:
    granted = FlavorAccess.objects.filter(flavor=OuterRef("pk"), project_id=project_id)
    return Q(is_public=True) | Q(Exists(granted))


def _visible(*, admin: bool, is_public: bool | None, project_id) -> QuerySet:
    query = Flavor.objects.all()
    if not admin:
        return query.filter(_accessible(project_id), disabled=False)
    if is_public is None:
        return query
    if is_public:
        return query.filter(_accessible(project_id))
    return query.filter(is_public=False)


def flavors_visible(ctx: RequestContext, *, is_public: bool | None = True) -> QuerySet:
    """Flavors the caller may list.

    Members see enabled public flavors and the private ones their project was given. Admins choose
    with ``is_public``: True (public, and private ones shared with their project), False (private
    only) or None (all).
    """
    return _visible(admin=ctx.is_admin, is_public=is_public, project_id=ctx.project.pk)


FLAVOR_COLUMNS = Columns(Flavor)


def _listed(shape, *, project_id=None, name=None, min_ram=None, min_disk=None) -> QuerySet:
    admin, is_public, order_by = shape
    query = _visible(admin=admin, is_public=is_public, project_id=project_id)
    if name is not None:
        query = query.filter(name__regex=name)
    if min_ram is not None:
        query = query.filter(memory_mb__gte=min_ram)
    if min_disk is not None:
        query = query.filter(root_gb__gte=min_disk)
    return FLAVOR_COLUMNS.values_list(query.order_by(*order_by))


_LISTED = CompiledQuery(_listed)


def flavors_listed(
    ctx: RequestContext,
    *,
    is_public: bool | None = True,
    name: str | None = None,
    min_ram: int | None = None,
    min_disk: int | None = None,
    order_by: tuple[str, ...] = ("flavorid", "id"),
) -> list[Flavor]:
    """``flavors_visible`` with the compute API's list filters, in ``order_by``: the list's query is
    built once per process for each combination of filters and order."""
    values = {"name": name, "min_ram": min_ram, "min_disk": min_disk}
    values = {key: value for key, value in values.items() if value is not None}
    if not ctx.is_admin or is_public:
        values["project_id"] = ctx.project.pk
    rows = _LISTED.rows((ctx.is_admin, is_public, tuple(order_by)), **values)
    return FLAVOR_COLUMNS.instances(rows)


def flavor_get(ctx: RequestContext, flavor_ref: str) -> Flavor | None:
    """A flavor by its API id, or by the last segment of a flavor URL; None when the caller may not see it."""
    flavorid = str(flavor_ref).rstrip("/").rsplit("/", 1)[-1]
    rows = scoped_rows(_GOT, ctx, flavorid=flavorid)
    return FLAVOR_COLUMNS.instances(rows)[0] if rows else None


def _got(scope: str, *, flavorid: str, project_id: str = "") -> QuerySet:
    query = Flavor.objects.filter(flavorid=flavorid)  # unique: no order to build and run
    if scope != "admin":
        query = query.filter(_accessible(project_id))
    return FLAVOR_COLUMNS.values_list(query)[:1]


# A boot reads its flavor so: the SQL is built once per process.
_GOT = CompiledQuery(_got)


def flavor_access_list(flavor: Flavor) -> list[str]:
    """The ids of the projects allowed to use a private flavor."""
    return list(FlavorAccess.objects.filter(flavor=flavor).order_by("project_id").values_list("project_id", flat=True))
