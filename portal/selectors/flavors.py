"""Flavor reads: public flavors for everyone, private ones for the projects given access, all for admins."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from portal.auth.context import RequestContext
from portal.models import Flavor, FlavorAccess


def _accessible(ctx: RequestContext) -> Q:
    granted = FlavorAccess.objects.filter(flavor=OuterRef("pk"), project_id=ctx.project.pk)
    return Q(is_public=True) | Q(Exists(granted))


def flavors_visible(ctx: RequestContext, *, is_public: bool | None = True) -> QuerySet:
    """Flavors the caller may list.

    Members see enabled public flavors and the private ones their project was given. Admins choose
    with ``is_public``: True (public, and private ones shared with their project), False (private
    only) or None (all).
    """
    query = Flavor.objects.all()
    if not ctx.is_admin:
        return query.filter(_accessible(ctx), disabled=False)
    if is_public is None:
        return query
    if is_public:
        return query.filter(_accessible(ctx))
    return query.filter(is_public=False)


def flavor_get(ctx: RequestContext, flavor_ref: str) -> Flavor | None:
    """A flavor by its API id, or by the last segment of a flavor URL; None when the caller may not see it."""
    flavorid = str(flavor_ref).rstrip("/").rsplit("/", 1)[-1]
    query = Flavor.objects.filter(flavorid=flavorid)
    if not ctx.is_admin:
        query = query.filter(_accessible(ctx))
    return query.first()


def flavor_access_list(flavor: Flavor) -> list[str]:
    """The ids of the projects allowed to use a private flavor."""
    return list(FlavorAccess.objects.filter(flavor=flavor).order_by("project_id").values_list("project_id", flat=True))
