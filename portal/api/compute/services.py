"""``/os-services`` (admins): the compute service of every host (binary ``nova-compute``).

Shapes per microversion: ``forced_down`` from 2.11 (and the ``force-down`` action); until 2.52 updates
are ``PUT /os-services/{enable|disable|disable-log-reason|force-down}`` naming host and binary in the
body; from 2.53 ids are UUIDs and ``PUT /os-services/{id}`` takes ``status``, ``disabled_reason`` and
``forced_down``. ``DELETE /os-services/{id}`` (an integer id before 2.53, the UUID from 2.53) takes a host
out of the cloud once no server and no move in progress is on it (409 before that).
"""

from __future__ import annotations

import re

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, NotFound
from portal.ids import is_uuid
from portal.models import ComputeHost
from portal.selectors.availability_zones import host_zone_names
from portal.selectors.compute_hosts import compute_host_get, compute_hosts
from portal.selectors.hosts import host_is_up
from portal.services.compute_hosts import HostInUse, compute_host_delete, compute_host_update

from . import validation
from .times import naive_iso

COMPUTE_BINARY = "nova-compute"
_LEGACY_ACTIONS = ("enable", "disable", "disable-log-reason", "force-down")


def service_body(host, request, zone: str) -> dict:
    version = request.api_version
    body = {
        "id": str(host.uuid) if version >= "2.53" else host.pk,
        "binary": COMPUTE_BINARY,
        "host": host.name,
        "zone": zone,
        "status": "enabled" if host.enabled else "disabled",
        "state": "up" if host_is_up(host) else "down",
        "updated_at": naive_iso(host.last_heartbeat),
        "disabled_reason": host.disabled_reason or None,
    }
    if version >= "2.11":
        body["forced_down"] = host.forced_down
    return body


def _reason(value) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        raise BadRequest("Invalid input for field/attribute disabled_reason: must be a string of 1 to 255.")
    return value


class ServiceListView(ComputeAPIView):
    def get(self, request):
        self.require_admin()
        validation.known_query(request, {"host", "binary"}, since="2.75")
        hosts = compute_hosts()
        if request.GET.get("host"):
            hosts = hosts.filter(name=request.GET["host"])
        if request.GET.get("binary") and request.GET["binary"] != COMPUTE_BINARY:
            hosts = hosts.none()
        hosts = list(hosts)
        zones = host_zone_names([h.pk for h in hosts])
        return Response({"services": [service_body(h, request, zones[h.pk]) for h in hosts]})


class ServiceView(ComputeAPIView):
    def put(self, request, service_id):
        self.require_admin()
        body = request.data
        if not isinstance(body, dict):
            raise BadRequest("The request body must be an object.")
        if request.api_version >= "2.53":
            return self._update(request, service_id, body)
        return self._legacy_action(request, service_id, body)

    def delete(self, request, service_id):
        self.require_admin()
        if request.api_version >= "2.53":
            if not is_uuid(service_id):
                raise BadRequest(f"Invalid uuid {service_id[:64]}")
            host = compute_host_get(uuid=service_id)
        else:
            if not re.fullmatch(r"-?[0-9]+", service_id):
                raise BadRequest("id must be an integer.")
            pk = int(service_id)
            host = compute_host_get(pk=pk) if abs(pk) < 2**63 else None
        if host is None:
            raise NotFound(f"Service {service_id[:64]} not found.")
        try:
            compute_host_delete(host=host)
        except HostInUse as exc:
            raise Conflict(str(exc)) from None
        except ComputeHost.DoesNotExist:
            raise NotFound(f"Service {service_id[:64]} not found.") from None
        return Response(status=204)

    def _update(self, request, service_id, body):
        validation.reject_unknown(body, {"status", "disabled_reason", "forced_down"}, "the request body")
        if not is_uuid(service_id):
            raise BadRequest(f"Invalid uuid {service_id[:64]}")
        host = compute_host_get(uuid=service_id)
        if host is None:
            raise NotFound(f"Service {service_id} could not be found.")
        changes = {}
        status = body.get("status")
        if "status" in body and status not in ("enabled", "disabled"):
            raise BadRequest("Invalid input for field/attribute status: must be 'enabled' or 'disabled'.")
        reason = _reason(body["disabled_reason"]) if "disabled_reason" in body else None
        if status == "enabled":
            if reason:
                raise BadRequest("Specifying 'disabled_reason' with status 'enabled' is invalid.")
            changes["enabled"] = True
        elif status == "disabled":
            changes["enabled"] = False
            changes["disabled_reason"] = reason
        if "forced_down" in body:
            changes["forced_down"] = validation.boolean(body["forced_down"], "forced_down")
        if not changes:
            raise BadRequest("No updates were requested. Fields 'status' or 'forced_down' should be specified.")
        host = compute_host_update(host=host, **changes)
        return Response({"service": service_body(host, request, host_zone_names([host.pk])[host.pk])})

    def _legacy_action(self, request, action, body):
        actions = _LEGACY_ACTIONS if request.api_version >= "2.11" else _LEGACY_ACTIONS[:3]
        if action not in actions:
            raise NotFound("Unknown action")
        allowed = {"host", "binary", "disabled_reason"} | ({"forced_down"} if request.api_version >= "2.11" else set())
        validation.reject_unknown(body, allowed, "the request body")
        host_name, binary = body.get("host"), body.get("binary")
        if not isinstance(host_name, str) or not host_name or not isinstance(binary, str) or not binary:
            raise BadRequest("Invalid input: 'host' and 'binary' are required strings.")
        if binary != COMPUTE_BINARY:
            raise BadRequest(
                f"Updating a {binary[:64]} service is not supported. Only nova-compute services can be updated."
            )
        host = ComputeHost.objects.filter(name=host_name).first()
        if host is None:
            raise NotFound(f"Compute host {host_name[:255]} with binary {binary} could not be found.")
        result = {"host": host_name, "binary": binary}
        if action == "enable":
            compute_host_update(host=host, enabled=True)
            result["status"] = "enabled"
        elif action in ("disable", "disable-log-reason"):
            reason = None
            if action == "disable-log-reason":
                if "disabled_reason" not in body:
                    raise BadRequest("Missing disabled reason field")
                reason = _reason(body["disabled_reason"])
            compute_host_update(host=host, enabled=False, disabled_reason=reason)
            result["status"] = "disabled"
            if reason:
                result["disabled_reason"] = reason
        else:
            if "forced_down" not in body:
                raise BadRequest("Missing forced_down field")
            forced_down = validation.boolean(body["forced_down"], "forced_down")
            compute_host_update(host=host, forced_down=forced_down)
            result["forced_down"] = forced_down
        return Response({"service": result})
