"""What routers and floating IPs a caller may see: its project's (admins: all). Others are not there."""

from __future__ import annotations

from django.db.models import QuerySet

from portal.ids import as_uuid
from portal.models import FloatingIP, Router


def routers_visible(ctx) -> QuerySet[Router]:
    rows = Router.objects.all()
    return rows if ctx.is_admin else rows.filter(project=ctx.project)


def router_get(ctx, router_id) -> Router | None:
    pk = as_uuid(router_id)
    return None if pk is None else routers_visible(ctx).filter(pk=pk).first()


def floating_ips_visible(ctx) -> QuerySet[FloatingIP]:
    rows = FloatingIP.objects.select_related("port")
    return rows if ctx.is_admin else rows.filter(project=ctx.project)


def floating_ip_get(ctx, floating_ip_id) -> FloatingIP | None:
    pk = as_uuid(floating_ip_id)
    return None if pk is None else floating_ips_visible(ctx).filter(pk=pk).first()
