"""The metadata service's control-plane end: which guest asks, proven by the host its port is on.

A guest's request reaches here from the metadata agent of the host the guest runs on, signed with that
host's key over the method, the path, the network and the guest's address (``compute_tasks.metadata_content``).
The request is believed only if an enrolled host signed it, within ``MAX_AGE_SECONDS``, and never before
(its nonce is kept with the conductor's). The guest is then the port holding that address on that network:
it must be bound to the signing host (a host only ever asks for the instances placed on it) and belong to
an instance. What is answered is that instance's metadata, and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from compute_tasks import metadata_content, signing
from portal.models import Instance, IPAllocation, MessageRefusal, Port, SeenMessage
from portal.states import VmState

from . import host_trust
from .host_requests import guest_metadata

log = logging.getLogger(__name__)

Reason = MessageRefusal.Reason


class MetadataRefused(Exception):
    """The request is not answered: ``status`` 403 (not believed) or 404 (no such guest or path)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class MetadataAnswer:
    body: bytes
    content_type: str


def metadata_answer(*, method: str, path: str, network_id: str, address: str, auth_header: str) -> MetadataAnswer:
    """Answer a guest's metadata request that a host forwarded; raise ``MetadataRefused`` otherwise."""
    body = metadata_content.request_body(method=method, path=path, network_id=network_id, address=address)
    host = _believe(body, auth_header)
    port = _guest_port(network_id, address)
    if port is None:
        raise MetadataRefused(404, f"no port holds {address} on network {network_id}")
    if port.host is None or port.host.name != host:
        host_trust.message_refused(
            sender=host,
            task=metadata_content.SIGNED_TASK,
            reason=Reason.NOT_ITS_OWN,
            detail=f"asked for the guest at {address}, whose port is not on it",
        )
        raise MetadataRefused(403, f"the port holding {address} is not on host {host}")
    instance = _instance_of(port)
    if instance is None:
        raise MetadataRefused(404, f"the port holding {address} belongs to no instance")
    guest = metadata_content.Guest(
        metadata=guest_metadata(instance),
        user_data=_user_data(instance),
        local_ipv4=address,
        instance_type=instance.flavor_name,
        ami_id=f"ami-{instance.image_id.hex[:8]}" if instance.image_id else "",
    )
    found = metadata_content.answer(guest, path)
    if found is None:
        raise MetadataRefused(404, f"{path} is not there")
    return MetadataAnswer(body=found[0], content_type=found[1])


def _believe(body: dict, auth_header: str) -> str:
    """The host that signed the request; it is refused (logged and counted) otherwise."""
    claimed = ""
    try:
        try:
            auth = json.loads(base64.b64decode(auth_header, validate=True))
        except (binascii.Error, ValueError):
            raise signing.Refused(signing.UNSIGNED, "the request carries no readable signature") from None
        if isinstance(auth, dict):
            claimed = str(auth.get("sender", ""))[:255]
        verified = signing.verify(
            metadata_content.SIGNED_TASK,
            signing.CONTROL_PLANE,
            body,
            auth,
            _host_key,
            max_age=metadata_content.MAX_AGE_SECONDS,
        )
        try:
            with transaction.atomic():
                SeenMessage.objects.create(nonce=verified.nonce, seen_at=timezone.now())
        except IntegrityError:
            raise signing.Refused(Reason.REPLAY, f"nonce {verified.nonce} was used before") from None
    except signing.Refused as exc:
        host_trust.message_refused(
            sender=claimed, task=metadata_content.SIGNED_TASK, reason=exc.reason, detail=str(exc)
        )
        raise MetadataRefused(403, "the request is not believed") from None
    return verified.sender


def _host_key(sender: str):
    """Only hosts forward metadata requests."""
    return None if sender == signing.CONTROL_PLANE else host_trust.public_key_of(sender)


def _guest_port(network_id: str, address: str) -> Port | None:
    try:
        uuid.UUID(network_id)
        ipaddress.IPv4Address(address)
    except ValueError:
        return None
    allocation = (
        IPAllocation.objects.filter(ip_address=address, port__network_id=network_id)
        .select_related("port__host")
        .first()
    )
    return allocation.port if allocation is not None else None


def _instance_of(port: Port) -> Instance | None:
    if not port.device_owner.startswith(Port.OWNER_COMPUTE):
        return None
    try:
        instance_uuid = uuid.UUID(port.device_id)
    except ValueError:
        return None
    return Instance.objects.filter(uuid=instance_uuid).exclude(vm_state=VmState.DELETED).first()


def _user_data(instance: Instance) -> bytes | None:
    if not instance.user_data:
        return None
    try:
        return base64.b64decode(instance.user_data, validate=True)
    except (binascii.Error, ValueError):
        log.warning("Instance %s has user data that is not base64", instance.uuid)
        return None
