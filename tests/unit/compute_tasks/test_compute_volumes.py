"""The host's side of volumes: its connector in every heartbeat, attach and detach under the instance lock
with one report each, and builds whose root disk is a volume."""

import uuid

import pytest

from compute_tasks import rpc
from compute_tasks.config import HostConfig
from compute_tasks.drivers.base import DriverError
from compute_tasks.drivers.fake import FakeDriver
from compute_tasks.manager import ComputeManager
from compute_tasks.volume_connector import host_connector, iscsi_initiator

pytestmark = pytest.mark.unit


class Reporter:
    def __init__(self):
        self.sent = []

    def __getattr__(self, name):
        return lambda *args: self.sent.append((name, args[-1]))


class Images:
    def __init__(self, base):
        self.base = base
        self.fetched = []

    def fetch(self, image, on_progress=None):
        self.fetched.append(image.id)
        return self.base


@pytest.fixture
def host(tmp_path):
    config = HostConfig.from_env(
        {
            "COMPUTE_HOST": "hv-vol",
            "COMPUTE_DRIVER": "fake",
            "COMPUTE_STATE_DIR": str(tmp_path / "state"),
            "COMPUTE_MY_IP": "192.0.2.7",
        }
    )
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"qcow")
    driver = FakeDriver(instances_dir=config.instances_dir)
    reporter = Reporter()
    manager = ComputeManager(config, driver, reporter=reporter, images=Images(base))
    return manager, driver, reporter


def build(instance_uuid, *, image=True, block_devices=()):
    return rpc.BuildRequest(
        instance_uuid=instance_uuid,
        domain_name=f"instance-{instance_uuid}",
        flavor=rpc.FlavorSpec(name="m1", vcpus=1, memory_mb=256, root_gb=1),
        image=rpc.ImageSpec(id="img-1", url="http://x/img", sha256="0" * 64, size=4) if image else None,
        block_devices=list(block_devices),
    )


def connection(volume_id, device="/dev/vdb", **kw):
    return rpc.VolumeConnection(volume_id=volume_id, attachment_id=f"att-{volume_id}", device=device, **kw)


def request(instance_uuid, volume, *, rollback=False):
    return rpc.VolumeRequest(
        instance_uuid=instance_uuid, domain_name=f"instance-{instance_uuid}", volume=volume, rollback=rollback
    )


def test_the_connector_names_the_host_its_address_and_initiator(tmp_path):
    initiator = tmp_path / "initiatorname.iscsi"
    initiator.write_text("## generated\nInitiatorName=iqn.1993-08.org.debian:01:abc\n")
    connector = host_connector(host="hv1", ip="192.0.2.7", initiator_file=initiator)
    assert connector["host"] == "hv1" and connector["ip"] == "192.0.2.7"
    assert connector["initiator"] == "iqn.1993-08.org.debian:01:abc"
    assert connector["multipath"] is False and connector["os_type"] == "linux"
    assert iscsi_initiator(tmp_path / "missing") is None
    assert "initiator" not in host_connector(host="hv1", ip="192.0.2.7", initiator_file=tmp_path / "missing")


def test_every_heartbeat_carries_the_connector(host):
    manager, _driver, _reporter = host
    beat = manager.heartbeat()
    assert beat.volume_connector["host"] == "hv-vol" and beat.volume_connector["ip"] == "192.0.2.7"
    assert rpc.Heartbeat.from_dict(beat.to_dict()).volume_connector == beat.volume_connector


def test_attach_and_detach_are_reported_once_each_and_are_idempotent(host):
    manager, driver, reporter = host
    instance = str(uuid.uuid4())
    manager.build_and_run_instance(build(instance))
    attach = request(instance, connection("vol-1"))

    manager.attach_volume(attach)
    manager.attach_volume(attach)  # redelivered

    assert driver.volumes[instance] == {"vol-1": "/dev/vdb"}
    results = [m for name, m in reporter.sent if name == "volume_done"]
    assert [(r.action, r.volume_id, r.attachment_id, r.error) for r in results] == [
        ("attach", "vol-1", "att-vol-1", ""),
        ("attach", "vol-1", "att-vol-1", ""),
    ]

    manager.detach_volume(request(instance, connection("vol-1"), rollback=True))
    assert driver.volumes[instance] == {}
    last = [m for name, m in reporter.sent if name == "volume_done"][-1]
    assert last.action == "detach" and last.rollback is True and not last.error


def test_a_failure_is_reported_with_its_reason(host):
    manager, driver, reporter = host
    instance = str(uuid.uuid4())
    manager.attach_volume(request(instance, connection("vol-2")))  # no domain
    manager.build_and_run_instance(build(instance))
    driver.fail_detach = DriverError("the guest did not release volume vol-2")
    manager.detach_volume(request(instance, connection("vol-2")))
    missing, kept = [m for name, m in reporter.sent if name == "volume_done"]
    assert "has no domain" in missing.error and missing.action == "attach"
    assert kept.error == "the guest did not release volume vol-2" and kept.details


def test_a_build_whose_root_is_a_volume_needs_no_base_image_but_fetches_the_volumes_image(host):
    manager, driver, reporter = host
    instance = str(uuid.uuid4())
    image = rpc.ImageSpec(id="img-9", url="http://x/img9", sha256="1" * 64, size=4)
    root = connection("root-vol", device="/dev/vda", boot_index=0, image=image)
    extra = connection("data-vol")

    manager.build_and_run_instance(build(instance, image=False, block_devices=[root, extra]))

    assert [name for name, _ in reporter.sent if name != "build_progress"] == ["instance_built"]
    assert manager.images.fetched == ["img-9"]
    assert driver.volumes[instance] == {"root-vol": "/dev/vda", "data-vol": "/dev/vdb"}


def test_build_requests_with_volumes_survive_the_wire():
    image = rpc.ImageSpec(id="i", url="u", sha256="s", size=1)
    original = build("u-1", image=False, block_devices=[connection("v", boot_index=0, image=image)])
    decoded = rpc.BuildRequest.from_dict(original.to_dict())
    assert decoded == original
    assert decoded.image is None and decoded.block_devices[0].image == image
    vr = request("u-1", connection("v", connection_info={"driver_volume_type": "nfs", "data": {"name": "x"}}))
    assert rpc.VolumeRequest.from_dict(vr.to_dict()) == vr
