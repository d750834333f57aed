import uuid

import pytest

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import ComputeHost, Role
from portal.services import volumes
from tests.factories import InstanceFactory, MembershipFactory

CONNECTOR = {
    "platform": "x86_64",
    "os_type": "linux",
    "ip": "127.0.0.1",
    "host": "volhost",
    "multipath": False,
    "enforce_multipath": False,
    "do_local_attach": False,
    "initiator": "iqn.1993-08.org.debian:01:0123456789ab",
}


class SentToHosts:
    """What the control plane asked hosts to do (the messages themselves, before they leave)."""

    def __init__(self):
        self.attach: list[tuple[str, rpc.VolumeRequest]] = []
        self.detach: list[tuple[str, rpc.VolumeRequest]] = []
        self.builds: list[tuple[str, rpc.BuildRequest]] = []
        self.build_failures: list[rpc.BuildFailed] = []


@pytest.fixture
def sent(monkeypatch):
    """Hosts' queues replaced by lists: the tests play the host and report back themselves."""
    record = SentToHosts()
    monkeypatch.setattr(volumes.rpc, "attach_volume", lambda host, request: record.attach.append((host, request)))
    monkeypatch.setattr(volumes.rpc, "detach_volume", lambda host, request: record.detach.append((host, request)))
    monkeypatch.setattr(
        volumes.rpc, "build_and_run_instance", lambda host, request: record.builds.append((host, request))
    )
    monkeypatch.setattr(volumes.rpc, "build_failed", lambda report: record.build_failures.append(report))
    monkeypatch.setattr(volumes.rpc, "release_volumes", lambda request: None)
    return record


@pytest.fixture
def volume_host(transactional_db):
    return ComputeHost.objects.create(name="volhost", volume_connector=CONNECTOR, vcpus=8, memory_mb=8192, disk_gb=100)


@pytest.fixture
def owner(transactional_db):
    membership = MembershipFactory(role=Role.MEMBER)
    # Cinder wants a hex project id, as Keystone's are; the portal's are too.
    assert int(membership.project.pk, 16) >= 0
    return RequestContext(user=membership.user, project=membership.project, role=Role.MEMBER)


@pytest.fixture
def server(owner, volume_host):
    return InstanceFactory(project=owner.project, user=owner.user, host=volume_host, uuid=uuid.uuid4())


def report(instance, request: rpc.VolumeRequest, action: str, *, error: str = "") -> rpc.VolumeResult:
    """What a host reports after a VolumeRequest."""
    return rpc.VolumeResult(
        instance_uuid=str(instance.uuid),
        host="volhost",
        request_id=request.request_id,
        action=action,
        volume_id=request.volume.volume_id,
        attachment_id=request.volume.attachment_id,
        error=error,
        rollback=request.rollback,
    )
