"""Nova's proxy of the networking API's floating IPs, until 2.35 (from 2.36, 404: clients use the
networking API): ``/os-floating-ip-pools`` (the external networks, by name) and ``/os-floating-ips``
(the project's floating IPs: list, allocate from a pool, show, release)."""

from __future__ import annotations

from django.db.models import Q
from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Forbidden, NotFound
from portal.ids import is_uuid
from portal.models import Network
from portal.selectors import routers as selectors
from portal.services import floating_ips as services
from portal.services.network_errors import NetworkError

_LAST_VERSION = "2.35"


def floating_ip_body(floating_ip) -> dict:
    port = floating_ip.port
    server = port.device_id if port is not None and port.device_owner.startswith("compute:") else None
    return {
        "id": str(floating_ip.pk),
        "ip": floating_ip.floating_ip_address,
        "pool": floating_ip.floating_network.name or str(floating_ip.floating_network_id),
        "fixed_ip": floating_ip.fixed_ip_address,
        "instance_id": server,
    }


class _ProxyView(ComputeAPIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.api_version > _LAST_VERSION:
            raise NotFound("The resource could not be found.")

    def visible(self):
        """The caller's project's floating IPs (admins: any, by id)."""
        return selectors.floating_ips_visible(self.ctx).select_related("floating_network")


class FloatingIPPoolsView(_ProxyView):
    def get(self, request):
        pools = Network.objects.filter(external=True).order_by("name", "id")
        return Response({"floating_ip_pools": [{"name": n.name or str(n.pk)} for n in pools]})


class FloatingIPListView(_ProxyView):
    def get(self, request):
        rows = self.visible().filter(project=self.ctx.project).order_by("created_at", "id")
        return Response({"floating_ips": [floating_ip_body(f) for f in rows]})

    def post(self, request):
        self.require_write()
        data = request.data if isinstance(request.data, dict) else {}
        pool = data.get("pool")
        if pool is not None and not isinstance(pool, str):
            raise BadRequest("Invalid input for field/attribute pool: must be a pool name.")
        externals = Network.objects.filter(external=True).order_by("created_at", "id")
        if pool:
            externals = externals.filter(Q(name=pool) | Q(pk=pool) if is_uuid(pool) else Q(name=pool))
        candidates = list(externals[:2])
        if not candidates or (not pool and len(candidates) > 1):
            raise NotFound(f"Floating IP pool not found: {(pool or '(none named)')[:64]}.")
        try:
            floating_ip = services.floating_ip_create(
                project=self.ctx.project, user_is_admin=self.ctx.is_admin, floating_network=candidates[0]
            )
        except NetworkError as exc:
            if exc.type == "OverQuota":
                raise Forbidden("Maximum number of floating IPs exceeded") from None
            if exc.type == "IpAddressGenerationFailure":
                raise NotFound(f"No more floating IPs in pool {candidates[0].name}.") from None
            raise BadRequest(exc.message) from None
        return Response({"floating_ip": floating_ip_body(self.visible().get(pk=floating_ip.pk))})


class FloatingIPView(_ProxyView):
    def found(self, floating_ip_id: str):
        floating_ip = self.visible().filter(pk=floating_ip_id).first() if is_uuid(floating_ip_id) else None
        if floating_ip is None:
            raise NotFound(f"Floating IP not found for ID {floating_ip_id[:64]}")
        return floating_ip

    def get(self, request, floating_ip_id: str):
        return Response({"floating_ip": floating_ip_body(self.found(floating_ip_id))})

    def delete(self, request, floating_ip_id: str):
        self.require_write()
        services.floating_ip_delete(floating_ip=self.found(floating_ip_id))
        return Response(status=202)
