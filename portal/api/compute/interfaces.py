"""``/servers/{id}/os-interface``: a server's ports (its NICs), attach (POST) and detach (DELETE).

An attach answers 200 with the port once it is made (or taken) and bound to the server's host, and the
host was asked to plug the NIC in; ``port_state`` turns ``ACTIVE`` when the host's data plane has the
NIC's tap on its network's bridge. ``tag`` is shown from 2.70.
"""

from __future__ import annotations

import ipaddress

from rest_framework import serializers
from rest_framework.response import Response

from portal.ids import is_uuid
from portal.services import instance_ports
from portal.services.lifecycle import StateConflict

from ..base import ComputeAPIView
from ..errors import BadRequest, Conflict, Forbidden, NotFound
from . import validation
from .serializers import VersionedSerializer
from .servers import get_instance_or_404


class AttachSerializer(VersionedSerializer):
    since = {"tag": "2.49"}

    net_id = serializers.CharField(required=False, allow_null=True, max_length=64)
    port_id = serializers.CharField(required=False, allow_null=True, max_length=64)
    fixed_ips = serializers.ListField(child=serializers.DictField(), required=False, max_length=1)
    tag = serializers.CharField(required=False, max_length=60)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        for key in ("net_id", "port_id"):
            if attrs.get(key) and not is_uuid(attrs[key]):
                raise serializers.ValidationError({key: "must be a UUID"})
        if attrs.get("port_id") and attrs.get("net_id"):
            raise serializers.ValidationError("Must not input both network_id and port_id")
        fixed = attrs.get("fixed_ips") or []
        if fixed:
            if attrs.get("port_id") or not attrs.get("net_id"):
                raise serializers.ValidationError("fixed_ips need net_id and no port_id")
            address = fixed[0].get("ip_address")
            try:
                ipaddress.ip_address(str(address))
            except ValueError:
                raise serializers.ValidationError({"fixed_ips": "ip_address must be an IP address"}) from None
            attrs["fixed_ip"] = str(address)
        return attrs


def interface_view(port, version: str) -> dict:
    body = {
        "fixed_ips": [{"subnet_id": str(a.subnet_id), "ip_address": a.ip_address} for a in port.fixed_ips.all()],
        "mac_addr": port.mac_address,
        "net_id": str(port.network_id),
        "port_id": str(port.pk),
        "port_state": port.status,
    }
    if version >= "2.70":
        body["tag"] = None
    return body


def _errors(exc: Exception):
    if isinstance(exc, instance_ports.NetworkRequestError):
        return {403: Forbidden, 404: NotFound, 409: Conflict}.get(exc.status, BadRequest)(str(exc))
    return Conflict(str(exc))


class InterfaceListView(ComputeAPIView):
    def get(self, request, server_id):
        validation.known_query(request, set(), since="2.102")
        instance = get_instance_or_404(self, server_id)
        ports = instance_ports.instance_ports(instance)
        return Response({"interfaceAttachments": [interface_view(p, request.api_version) for p in ports]})

    def post(self, request, server_id):
        self.require_write()
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("interfaceAttachment", {}), dict):
            raise BadRequest("The request body must be an object with an 'interfaceAttachment' object.")
        serializer = AttachSerializer(
            data=body.get("interfaceAttachment", {}), context={"api_version": request.api_version}
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        instance = get_instance_or_404(self, server_id)
        try:
            port = instance_ports.interface_attach(
                ctx=self.ctx,
                instance=instance,
                network_id=data.get("net_id") or "",
                port_id=data.get("port_id") or "",
                fixed_ip=data.get("fixed_ip", ""),
            )
        except (StateConflict, instance_ports.NetworkRequestError) as exc:
            raise _errors(exc) from None
        port = instance_ports.instance_ports(instance).get(pk=port.pk)
        return Response({"interfaceAttachment": interface_view(port, request.api_version)})


class InterfaceView(ComputeAPIView):
    def get(self, request, server_id, port_id):
        validation.known_query(request, set(), since="2.102")
        instance = get_instance_or_404(self, server_id)
        port = instance_ports.instance_ports(instance).filter(pk=port_id).first() if is_uuid(port_id) else None
        if port is None:
            raise NotFound("Network interface not found")
        return Response({"interfaceAttachment": interface_view(port, request.api_version)})

    def delete(self, request, server_id, port_id):
        self.require_write()
        instance = get_instance_or_404(self, server_id)
        try:
            instance_ports.interface_detach(ctx=self.ctx, instance=instance, port_id=port_id)
        except (StateConflict, instance_ports.NetworkRequestError) as exc:
            raise _errors(exc) from None
        return Response(status=202)
