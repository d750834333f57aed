"""Live migration of a real guest between two hypervisor hosts on this machine: wall time and downtime.

Starts two private libvirtds (``scripts/libvirt_host.py``, on 127.0.0.41 and 127.0.0.42 unless told
otherwise), each with its own instance directory (no shared storage), boots the demo image under TCG on
the first with a compute manager of the libvirt driver per host (the hosts' own code, driven in this
process as a compute worker would drive it), waits for the guest's banner, then live-migrates it with
block migration back and forth ``--runs`` times: prepare on the destination, ``live_migrate`` on the
source, ``post_live_migration`` on the destination, as the conductor orders them.

Per run: ``wall_s`` from the prepare to the end of the post (what a user waits, without the messages
between hosts), ``migrate_s`` the source's ``live_migrate`` alone, and the guest's ``downtime_ms`` as
the destination's libvirt records it in the completed job's statistics. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import libvirt  # noqa: E402

from compute_tasks import rpc  # noqa: E402
from compute_tasks.config import HostConfig  # noqa: E402
from compute_tasks.drivers.libvirt_driver import LibvirtDriver  # noqa: E402
from compute_tasks.manager import ComputeManager  # noqa: E402
from compute_tasks.rpc import (  # noqa: E402
    BuildRequest,
    FlavorSpec,
    ImageSpec,
    InstanceMetadata,
    InstanceRef,
    LiveMigrateRequest,
    MigrationRef,
    NicSpec,
    PrepareLiveMigrationRequest,
)
from scripts.libvirt_host import LibvirtHost, default_cache_dir  # noqa: E402

DEMO_IMAGE = ROOT / "var" / "images" / "demo.qcow2"
BANNER = b"Welcome to the cloud demo guest"
BOOT_TIMEOUT_S = 180


class Results:
    """The manager's reports, kept in order (the reporter a compute worker sends to the conductor)."""

    def __init__(self):
        self.sent: list = []

    def instance_built(self, result):
        self.sent.append(result)

    def build_failed(self, result):
        self.sent.append(result)

    def action_done(self, result):
        self.sent.append(result)

    def migration_progress(self, progress):
        self.sent.append(progress)

    def heartbeat(self, beat):
        pass

    def last(self, action: str):
        result = self.sent[-1]
        if getattr(result, "error", "") or getattr(result, "action", action) != action:
            raise SystemExit(f"{action} failed: {result}")
        return result


class ImageServer:
    """The demo image over HTTP on 127.0.0.1, as the image API's signed URL serves it to a host."""

    def __init__(self, path: Path):
        directory = str(path.parent)

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=directory, **kwargs)

            def log_message(self, *args):
                pass

        self.path = path
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def spec(self) -> ImageSpec:
        data = self.path.read_bytes()
        return ImageSpec(
            id="demo",
            url=f"http://127.0.0.1:{self.httpd.server_port}/{self.path.name}?signature=bench",
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def manager_for(name: str, libvirtd: LibvirtHost, state_root: Path) -> ComputeManager:
    config = HostConfig.from_env(
        {
            "COMPUTE_HOST": name,
            "COMPUTE_DRIVER": "libvirt",
            # State directories named after their hosts, side by side (manager.peer_instances_dir).
            "COMPUTE_STATE_DIR": str(state_root / name),
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
    return ComputeManager(config, driver, Results())


def wait_for_banner(manager: ComputeManager, instance_uuid: str) -> float:
    started = time.monotonic()
    log = manager.config.instance_dir(instance_uuid) / "console.log"
    while not (log.exists() and BANNER in log.read_bytes()):
        if time.monotonic() - started > BOOT_TIMEOUT_S:
            raise SystemExit(f"no banner on {log} after {BOOT_TIMEOUT_S}s")
        time.sleep(0.2)
    return time.monotonic() - started


def completed_job(uri: str, instance_uuid: str) -> dict:
    conn = libvirt.open(uri)
    try:
        return conn.lookupByUUIDString(instance_uuid).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    finally:
        conn.close()


def migrate_once(source: ComputeManager, destination: ComputeManager, request: BuildRequest, migration_id: int):
    started = time.monotonic()
    destination.prepare_live_migration(
        PrepareLiveMigrationRequest(build=request, migration_id=migration_id, block_migration=True)
    )
    prepared = destination.reporter.last("prepare_live_migration")
    migrate_started = time.monotonic()
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
    source.reporter.last("live_migrate")
    migrated = time.monotonic()
    destination.post_live_migration(
        MigrationRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=migration_id)
    )
    if destination.reporter.last("post_live_migration").power_state != rpc.RUNNING:
        raise SystemExit("the guest does not run on its destination")
    ended = time.monotonic()
    job = completed_job(destination.driver.uri, request.instance_uuid)
    return {
        "wall_s": round(ended - started, 3),
        "migrate_s": round(migrated - migrate_started, 3),
        "downtime_ms": job.get("downtime"),
        "memory_transferred_mib": round(job.get("memory_processed", 0) / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--addresses", nargs=2, default=["127.0.0.41", "127.0.0.42"], metavar="ADDRESS")
    parser.add_argument("--memory-mb", type=int, default=256)
    args = parser.parse_args(argv)
    if not DEMO_IMAGE.is_file():
        raise SystemExit(f"{DEMO_IMAGE} is missing: run scripts/build_demo_image.sh")

    work = Path(tempfile.mkdtemp(prefix="bench-live-migration-"))
    names = ("bench-lm-a", "bench-lm-b")
    libvirtds = {}
    managers: dict[str, ComputeManager] = {}
    image = ImageServer(DEMO_IMAGE)
    request = None
    load_before = os.getloadavg()
    try:
        for name, address in zip(names, args.addresses, strict=True):
            directory = work / "libvirt" / name
            directory.mkdir(parents=True)
            libvirtds[name] = LibvirtHost(directory, address, cache_dir=default_cache_dir(address)).start()
            managers[name] = manager_for(name, libvirtds[name], work / "state")
        instance_uuid = str(uuid.uuid4())
        request = BuildRequest(
            instance_uuid=instance_uuid,
            domain_name=f"bench-live-{instance_uuid[:8]}",
            flavor=FlavorSpec(name="bench", vcpus=1, memory_mb=args.memory_mb, root_gb=1),
            image=image.spec(),
            nics=[NicSpec(mac="52:54:00:5b:00:01", network="user")],
            metadata=InstanceMetadata(uuid=instance_uuid, name="bench", hostname="bench", project_id="bench"),
        )
        first = managers[names[0]]
        first.build_and_run_instance(request)
        if first.reporter.sent[-1].power_state != rpc.RUNNING:
            raise SystemExit(f"the guest did not start: {first.reporter.sent[-1]}")
        booted_s = wait_for_banner(first, instance_uuid)

        runs = []
        for run in range(args.runs):
            source, destination = managers[names[run % 2]], managers[names[(run + 1) % 2]]
            runs.append(migrate_once(source, destination, request, migration_id=run + 1))
    finally:
        if request is not None:
            ref = InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name)
            for manager in managers.values():
                manager.driver.destroy(ref)
        for manager in managers.values():
            manager.driver.close()
        for libvirtd in libvirtds.values():
            libvirtd.stop()
        image.close()

    downtimes = [run["downtime_ms"] for run in runs if run["downtime_ms"] is not None]
    print(
        json.dumps(
            {
                "scenario": "live_migration",
                "image": "demo",
                "virt": "two private libvirtds, TCG",
                "block_migration": True,
                "memory_mb": args.memory_mb,
                "runs": len(runs),
                "wall_median_s": statistics.median(run["wall_s"] for run in runs),
                "migrate_median_s": statistics.median(run["migrate_s"] for run in runs),
                "downtime_median_ms": statistics.median(downtimes) if downtimes else None,
                "wall_s": [run["wall_s"] for run in runs],
                "downtime_ms": [run["downtime_ms"] for run in runs],
                "memory_transferred_mib": [run["memory_transferred_mib"] for run in runs],
                "boot_to_banner_s": round(booted_s, 3),
                "load_before": [round(x, 2) for x in load_before],
                "load_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
