"""``GET /limits``: the project's absolute limits and usage, in the shape of each microversion.

2.36 dropped the network limits (before it, the floating IP limit and usage are the networking API's
``floatingip``), 2.39 ``maxImageMeta``, 2.57 the personality limits. Admins may ask for another
project's with ``?tenant_id=``. There are no rate limits (``rate`` is always empty).
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Forbidden
from portal.selectors import quotas as selectors
from portal.services.projects import project_by_id

# quota resource -> the absolute limits it is shown as
_LIMIT_NAMES = {
    "ram": ("maxTotalRAMSize",),
    "instances": ("maxTotalInstances",),
    "cores": ("maxTotalCores",),
    "key_pairs": ("maxTotalKeypairs",),
    "floating_ips": ("maxTotalFloatingIps",),
    "metadata_items": ("maxServerMeta", "maxImageMeta"),
    "injected_files": ("maxPersonality",),
    "injected_file_content_bytes": ("maxPersonalitySize",),
    "security_groups": ("maxSecurityGroups",),
    "security_group_rules": ("maxSecurityGroupRules",),
    "server_groups": ("maxServerGroups",),
    "server_group_members": ("maxServerGroupMembers",),
}
_USED_NAMES = {
    "totalRAMUsed": "ram",
    "totalCoresUsed": "cores",
    "totalInstancesUsed": "instances",
    "totalFloatingIpsUsed": "floating_ips",
    "totalSecurityGroupsUsed": "security_groups",
    "totalServerGroupsUsed": "server_groups",
}
_HIDDEN_236 = ("floating_ips", "security_groups", "security_group_rules")
_HIDDEN_257 = (*_HIDDEN_236, "injected_files", "injected_file_content_bytes")


def absolute_limits(limits: dict[str, int], used: dict[str, int], version) -> dict[str, int]:
    hidden: tuple[str, ...] = ()
    if version >= "2.57":
        hidden = _HIDDEN_257
    elif version >= "2.36":
        hidden = _HIDDEN_236
    body: dict[str, int] = {}
    for resource, names in _LIMIT_NAMES.items():
        if resource in hidden:
            continue
        for name in names:
            if name == "maxImageMeta" and version >= "2.39":
                continue
            body[name] = limits[resource]
    for name, resource in _USED_NAMES.items():
        if resource not in hidden:
            body[name] = used.get(resource, 0)
    return body


class LimitsView(ComputeAPIView):
    def get(self, request):
        if request.api_version >= "2.75":
            unknown = sorted(set(request.GET) - {"tenant_id"})
            if unknown:
                raise BadRequest(f"Invalid input for query parameters: {unknown[0][:64]!r} is not allowed.")
        project = self.ctx.project
        tenant_id = request.GET.get("tenant_id")
        if tenant_id is not None and tenant_id != project.pk:
            if not self.ctx.is_admin:
                raise Forbidden("Policy doesn't allow os_compute_api:limits:other_project to be performed.")
            project = project_by_id(tenant_id)
            if project is None:
                raise BadRequest(f"Project ID {tenant_id[:64]} is not a valid project.")
        limits = selectors.project_limits(project)
        used = selectors.usage(project, keypair_owner=self.ctx.user)
        if request.api_version < "2.36":
            # Nova proxied these to Neutron: the floating IPs are the networking API's.
            limits["floating_ips"] = limits["floatingip"]
            used["floating_ips"] = selectors.network_usage(project)["floatingip"]
        return Response({"limits": {"rate": [], "absolute": absolute_limits(limits, used, request.api_version)}})
