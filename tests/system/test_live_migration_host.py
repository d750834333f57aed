"""The host's side of live migration on real guests: two private libvirtds (127.0.0.31 and .32), the demo
image under TCG, the host methods driven directly in this process (a manager with the libvirt driver per
host; the image API is the small HTTP server of ``test_host_moves``).

The guest's user data prints a counter and its boot id to the serial port every second: after a block
migration the destination's serial log goes on counting with the same boot id, so the guest moved
without a reboot. An aborted migration leaves it running on the source and nothing on the destination.
"""

import base64
import re
import threading
import time
import uuid

import libvirt
import pytest

from compute_tasks import rpc
from compute_tasks.config import HostConfig
from compute_tasks.drivers.libvirt_driver import LibvirtDriver
from compute_tasks.manager import ComputeManager
from compute_tasks.rpc import (
    BuildRequest,
    FlavorSpec,
    InstanceMetadata,
    InstanceRef,
    LiveMigrateRequest,
    MigrationProgress,
    MigrationRef,
    NicSpec,
    PrepareLiveMigrationRequest,
)
from tests.libvirt_hosts import LibvirtHosts
from tests.system.test_host_moves import BOOT_TIMEOUT_S, DEMO_IMAGE, ImageStore, Reports

pytestmark = pytest.mark.system

ADDRESSES = {"lm-a": "127.0.0.31", "lm-b": "127.0.0.32"}
USER_DATA = """#!/bin/sh
( i=0; boot=$(cat /proc/sys/kernel/random/boot_id)
  while true; do i=$((i+1)); echo "TICK $i boot=$boot" > /dev/ttyS0; sleep 1; done ) &
"""
TICK = re.compile(r"TICK (\d+) boot=(\S+)")


class HostReports(Reports):
    def migration_progress(self, progress):
        self.sent.append(progress)

    def results(self):
        return [m for m in self.sent if isinstance(m, rpc.ActionResult)]

    def last_result(self):
        result = self.results()[-1]
        assert not result.error, result.details
        return result


@pytest.fixture(scope="module")
def libvirtds(tmp_path_factory):
    if not DEMO_IMAGE.is_file():
        pytest.skip(f"{DEMO_IMAGE} is missing: run scripts/build_demo_image.sh")
    hosts = LibvirtHosts(tmp_path_factory.mktemp("live-migration") / "libvirt")
    try:
        for name, address in ADDRESSES.items():
            hosts.start(name, address)
        yield hosts
    finally:
        hosts.stop()


@pytest.fixture
def cluster(libvirtds, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "demo").write_bytes(DEMO_IMAGE.read_bytes())
    store = ImageStore(served)
    managers = {}
    for name, libvirtd in libvirtds.hosts.items():
        config = HostConfig.from_env(
            {
                "COMPUTE_HOST": name,
                "COMPUTE_DRIVER": "libvirt",
                # Named after the host, as the hosts' state directories are (manager.peer_instances_dir).
                "COMPUTE_STATE_DIR": str(tmp_path / name),
                "COMPUTE_VNC_LISTEN": libvirtd.vnc_listen,
                "COMPUTE_MIGRATION_ADDRESS": libvirtd.migration_address,
                "COMPUTE_MY_IP": libvirtd.address,
            }
        )
        driver = LibvirtDriver(
            uri=libvirtd.uri,
            virt_type="qemu",
            instances_dir=config.instances_dir,
            vnc_listen=config.vnc_listen,
            vnc_host=config.vnc_listen,
            shutdown_timeout=10,
        )
        managers[name] = ComputeManager(config, driver, HostReports())
    made = []
    yield managers, store, made
    for manager in managers.values():
        for request in made:
            manager.driver.destroy(InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name))
        manager.driver.close()
    store.close()


def boot(manager, store, made):
    instance_uuid = str(uuid.uuid4())
    request = BuildRequest(
        instance_uuid=instance_uuid,
        domain_name=f"test-live-{uuid.uuid4().hex[:8]}",
        flavor=FlavorSpec(name="tiny", vcpus=1, memory_mb=256, root_gb=1),
        image=store.spec("demo"),
        nics=[NicSpec(mac="52:54:00:5a:00:03", network="user")],
        user_data=base64.b64encode(USER_DATA.encode()).decode(),
        metadata=InstanceMetadata(uuid=instance_uuid, name="ticker", hostname="ticker", project_id="p"),
    )
    made.append(request)
    manager.build_and_run_instance(request)
    assert manager.reporter.sent[-1].power_state == rpc.RUNNING, manager.reporter.sent[-1]
    wait_for_ticks(manager, request, 3)
    return request


def ticks(manager, request):
    log = manager.config.instance_dir(request.instance_uuid) / "console.log"
    text = log.read_bytes().decode(errors="replace") if log.exists() else ""
    return [(int(n), boot) for n, boot in TICK.findall(text)]


def wait_for_ticks(manager, request, count, after=0):
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while len([t for t in ticks(manager, request) if t[0] > after]) < count:
        assert time.monotonic() < deadline, "the guest does not count on its serial port"
        time.sleep(0.2)


def prepare(destination, request, migration_id):
    destination.prepare_live_migration(
        PrepareLiveMigrationRequest(build=request, migration_id=migration_id, block_migration=True)
    )
    return destination.reporter.last_result()


def live_migrate(source, destination, request, migration_id, prepared):
    source.live_migrate(
        LiveMigrateRequest(
            instance_uuid=request.instance_uuid,
            domain_name=request.domain_name,
            migration_id=migration_id,
            dest_host=destination.host,
            dest_uri=prepared.migrate_uri,
            dest_vnc_listen=prepared.vnc_host,
            block_migration=True,
        )
    )


def domains(manager):
    return manager.driver.list_domains().instances


def test_a_block_migration_moves_the_counting_guest_without_a_reboot(cluster):
    managers, store, made = cluster
    source, destination = managers["lm-a"], managers["lm-b"]
    request = boot(source, store, made)
    before = ticks(source, request)
    boot_id = before[-1][1]

    prepared = prepare(destination, request, 51)
    assert prepared.migrate_uri == "qemu+tcp://127.0.0.32/system" and prepared.vnc_host == "127.0.0.32"
    started = time.monotonic()
    live_migrate(source, destination, request, 51, prepared)
    wall = time.monotonic() - started
    done = source.reporter.last_result()
    assert (done.action, done.migration_id) == ("live_migrate", 51)
    # A small guest may move before the source's first look finds any totals: it sends none then.
    progress = [m for m in source.reporter.sent if isinstance(m, MigrationProgress)]
    assert all(m.memory_total_bytes + m.disk_total_bytes > 0 for m in progress), progress

    assert request.instance_uuid not in domains(source)
    assert not source.config.instance_dir(request.instance_uuid).exists()
    destination.post_live_migration(
        MigrationRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=51)
    )
    post = destination.reporter.last_result()
    assert post.power_state == rpc.RUNNING and post.vnc_host == "127.0.0.32" and post.vnc_port
    # The destination reports the job's final figures: all of the guest's memory moved. (libvirt keeps no
    # disk figures in a completed job whose disks were copied by their own mirror jobs.)
    (final,) = [m for m in destination.reporter.sent if isinstance(m, MigrationProgress)]
    assert (final.host, final.migration_id) == ("lm-b", 51)
    assert final.memory_total_bytes > 0 and final.memory_processed_bytes > 0, final
    assert final.memory_remaining_bytes == 0, final
    wait_for_ticks(destination, request, 3)
    after = ticks(destination, request)
    assert {boot for _, boot in after} == {boot_id}  # the same boot: it was never restarted
    assert after[0][0] > before[-1][0]  # and it went on counting
    conn = libvirt.open(destination.driver.uri)
    try:
        dom = conn.lookupByUUIDString(request.instance_uuid)
        assert dom.isPersistent() and not dom.autostart()
        completed = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    finally:
        conn.close()
    print(
        f"\nblock migration: wall {wall:.1f}s, downtime {completed.get('downtime', '?')} ms, "
        f"{len(progress)} progress reports, ticks {before[-1][0]} -> {after[0][0]}"
    )


def test_an_aborted_migration_leaves_the_guest_on_the_source_and_nothing_on_the_destination(cluster):
    managers, store, made = cluster
    source, destination = managers["lm-a"], managers["lm-b"]
    request = boot(source, store, made)
    ref = MigrationRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=52)
    prepared = prepare(destination, request, 52)
    # Slowed down to 1 MiB/s, so that it is still running when the abort comes.
    source.driver._call(
        "slowing down", lambda conn: conn.lookupByUUIDString(request.instance_uuid).migrateSetMaxSpeed(1)
    )
    mover = threading.Thread(target=live_migrate, args=(source, destination, request, 52, prepared))
    mover.start()
    deadline = time.monotonic() + 60
    while not any(isinstance(m, MigrationProgress) for m in source.reporter.sent):
        assert time.monotonic() < deadline and mover.is_alive(), source.reporter.sent
        time.sleep(0.2)
    source.abort_live_migration(ref)
    mover.join(60)
    assert not mover.is_alive()
    (failed,) = source.reporter.results()[-1:]
    assert failed.action == "live_migrate" and "cancelled" in failed.error and failed.power_state == rpc.RUNNING

    destination.rollback_live_migration(ref)
    assert destination.reporter.last_result().action == "rollback_live_migration"
    assert request.instance_uuid not in domains(destination)
    assert not destination.config.instance_dir(request.instance_uuid).exists()
    assert domains(source)[request.instance_uuid] == rpc.RUNNING
    last = ticks(source, request)[-1][0]
    wait_for_ticks(source, request, 2, after=last)  # still counting where it was

    source.abort_live_migration(ref)
    assert source.reporter.results()[-1].error == "no migration is running"
