"""The one contract between the control plane and the compute hosts.

Task names, the versioned message dataclasses, and the only functions that enqueue work. Both sides
send by task *name* through ``celery.current_app`` (the portal's app in control-plane processes, the
host's app in a compute worker), so neither side imports the other's task functions.

Messages are plain JSON: every dataclass here round-trips through ``to_dict``/``from_dict``, and
``from_dict`` ignores keys it does not know so that a newer sender can talk to an older receiver.

Every message is signed by its sender (``compute_tasks.signing``): a task gets two arguments, the
message and its ``auth`` block, addressed to the queue it is put on. Each side installs how it signs
(``use_signer``) and whom it believes (``use_verifier``) once at start-up.

Every message carries the id of the request that caused it under ``_request_id``
(``compute_tasks.request_ids``), inside the signed body: the message's own ``request_id`` when it has
one, else the request the sender is working for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Self

from celery import current_app
from kombu import Exchange, Queue

from compute_tasks import request_ids, signing

log = logging.getLogger(__name__)

MESSAGE_VERSION = "1.0"

CONDUCTOR_QUEUE = "conductor"

# Control plane -> compute host (queue compute.<host>)
BUILD_AND_RUN_INSTANCE = "compute.build_and_run_instance"
START_INSTANCE = "compute.start_instance"
STOP_INSTANCE = "compute.stop_instance"
REBOOT_INSTANCE = "compute.reboot_instance"
TERMINATE_INSTANCE = "compute.terminate_instance"
PAUSE_INSTANCE = "compute.pause_instance"
UNPAUSE_INSTANCE = "compute.unpause_instance"
SUSPEND_INSTANCE = "compute.suspend_instance"
RESUME_INSTANCE = "compute.resume_instance"
REBUILD_INSTANCE = "compute.rebuild_instance"
SNAPSHOT_INSTANCE = "compute.snapshot_instance"
GET_CONSOLE_OUTPUT = "compute.get_console_output"
CONSOLE_OUTPUT_REPLY = "reply.console_output"  # not a task: what a host's answer is signed as
GET_DIAGNOSTICS = "compute.get_diagnostics"
DIAGNOSTICS_REPLY = "reply.diagnostics"  # not a task: what a host's answer is signed as
GET_INSTANCE_GRAPHS = "compute.get_instance_graphs"
INSTANCE_GRAPHS_REPLY = "reply.instance_graphs"  # not a task: what a host's answer is signed as
ATTACH_VOLUME = "compute.attach_volume"
DETACH_VOLUME = "compute.detach_volume"
MIGRATE_DISK = "compute.migrate_disk"  # resize / cold migrate, on the source
FINISH_MIGRATION = "compute.finish_migration"  # on the destination
CONFIRM_MIGRATION = "compute.confirm_migration"  # on the source
REVERT_MIGRATION = "compute.revert_migration"  # on the destination
FINISH_REVERT_MIGRATION = "compute.finish_revert_migration"  # on the source
SHELVE_INSTANCE = "compute.shelve_instance"
SHELVE_OFFLOAD_INSTANCE = "compute.shelve_offload_instance"
RESCUE_INSTANCE = "compute.rescue_instance"
UNRESCUE_INSTANCE = "compute.unrescue_instance"
PREPARE_LIVE_MIGRATION = "compute.prepare_live_migration"  # on the destination
LIVE_MIGRATE = "compute.live_migrate"  # on the source
ABORT_LIVE_MIGRATION = "compute.abort_live_migration"  # on the source
FORCE_COMPLETE_LIVE_MIGRATION = "compute.force_complete_live_migration"  # on the source
POST_LIVE_MIGRATION = "compute.post_live_migration"  # on the destination
ROLLBACK_LIVE_MIGRATION = "compute.rollback_live_migration"  # on the destination
APPLY_NETWORK_STATE = "compute.apply_network_state"  # the host's whole desired data plane
ATTACH_INTERFACE = "compute.attach_interface"
DETACH_INTERFACE = "compute.detach_interface"
CACHE_IMAGES = "compute.cache_images"  # pre-cache images named through an aggregate (compute API 2.81)

# Compute host / API -> conductor (queue conductor)
SCHEDULE_AND_BUILD = "conductor.schedule_and_build"
INSTANCE_BUILT = "conductor.instance_built"
BUILD_FAILED = "conductor.build_failed"
BUILD_PROGRESS = "conductor.build_progress"  # a build's step on its host, and its image download's percent
ACTION_DONE = "conductor.action_done"
ACTION_FAILED = "conductor.action_failed"
HEARTBEAT = "conductor.heartbeat"
VOLUME_ATTACHED = "conductor.volume_attached"
VOLUME_DETACHED = "conductor.volume_detached"
RELEASE_VOLUMES = "conductor.release_volumes"
MOVE_SERVER = "conductor.move_server"  # resize / cold migrate: choose and claim the destination
UNSHELVE_SERVER = "conductor.unshelve_server"  # place an offloaded server again
MIGRATION_PROGRESS = "conductor.migration_progress"  # a live migration's transfer, about every second
LIVE_MIGRATE_SERVER = "conductor.live_migrate_server"  # choose and claim a live migration's destination
EVACUATE_SERVER = "conductor.evacuate_server"  # place the server of a host that is down elsewhere
NETWORK_STATE_APPLIED = "conductor.network_state_applied"  # what a host's data plane now is

# Power states, numbered as Nova numbers them (nova/compute/power_state.py).
NOSTATE = 0
RUNNING = 1
PAUSED = 3
SHUTDOWN = 4
CRASHED = 6
SUSPENDED = 7

# Nova's names of the power states (nova/compute/power_state.py STATE_MAP), as diagnostics show them.
POWER_STATE_NAMES = {
    NOSTATE: "pending",
    RUNNING: "running",
    PAUSED: "paused",
    SHUTDOWN: "shutdown",
    CRASHED: "crashed",
    SUSPENDED: "suspended",
}


HEARTBEAT_TTL_SECONDS = 30.0
MIGRATION_PROGRESS_TTL_SECONDS = 30.0
BUILD_PROGRESS_TTL_SECONDS = 30.0

# The steps of a build a host reports as it begins them (the control plane's task states of the same name).
BUILD_STEP_BLOCK_DEVICE_MAPPING = "block_device_mapping"  # its disks: the image is fetched into the cache
BUILD_STEP_SPAWNING = "spawning"  # its domain is defined and started


def compute_queue(host: str) -> str:
    return f"compute.{host}"


class Message:
    """Mixin for the message dataclasses: JSON-safe dicts in and out, tolerant of unknown keys."""

    version: ClassVar[str] = MESSAGE_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        data["_version"] = self.version
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kwargs = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                continue
            value = data[f.name]
            nested = _NESTED.get((cls.__name__, f.name))
            if nested is not None and value is not None:
                value = [nested.from_dict(v) for v in value] if isinstance(value, list) else nested.from_dict(value)
            kwargs[f.name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class FlavorSpec(Message):
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    extra_specs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageSpec(Message):
    id: str
    url: str  # time-limited signed download URL
    sha256: str  # hex digest the host verifies before using the file
    size: int
    disk_format: str = "qcow2"


@dataclass(frozen=True)
class NicSpec(Message):
    """One NIC of a guest. ``network`` "user" is QEMU user-mode networking; "port" is a port of the
    cloud's network controller, whose host-side device ``device`` (a tap) the host's data plane plugs into
    the network's bridge; any other name is a libvirt network."""

    mac: str
    network: str
    ip: str | None = None
    port_id: str = ""
    device: str = ""  # the tap, for "port"
    mtu: int | None = None


@dataclass(frozen=True)
class VolumeConnection(Message):
    """A Cinder volume as a host plugs it in: ``connection_info`` is Cinder's answer for this host's
    connector, re-nested as ``{"driver_volume_type": ..., "data": {...}}``. ``device`` is the guest disk
    name (``vdb``). ``image``, when set, is copied onto the volume before the guest first boots from it."""

    volume_id: str
    attachment_id: str
    device: str
    connection_info: dict[str, Any] = field(default_factory=dict)
    boot_index: int | None = None
    image: ImageSpec | None = None


@dataclass(frozen=True)
class VolumeRequest(Message):
    """Attach or detach one volume of a domain; ``rollback`` marks a detach that undoes a failed attach."""

    instance_uuid: str
    domain_name: str
    volume: VolumeConnection
    request_id: str = ""
    rollback: bool = False


@dataclass(frozen=True)
class VolumeResult(Message):
    """What a host did with a VolumeRequest; ``error`` is empty when it worked."""

    instance_uuid: str
    host: str
    request_id: str
    action: str  # "attach" | "detach"
    volume_id: str
    attachment_id: str
    error: str = ""
    details: str = ""
    rollback: bool = False


@dataclass(frozen=True)
class VolumeRelease(Message):
    """The instance is gone: its volumes' attachments go, and the volumes that die with it."""

    instance_uuid: str
    request_id: str = ""


@dataclass(frozen=True)
class InjectedFile(Message):
    """A personality file: where the guest should put it and its bytes, base64 as the API took them."""

    path: str
    contents: str


@dataclass(frozen=True)
class InstanceMetadata(Message):
    """What the guest learns about itself from its config drive (OpenStack's ``meta_data.json``)."""

    uuid: str
    name: str
    hostname: str
    project_id: str
    availability_zone: str = ""
    launch_index: int = 0
    meta: dict[str, str] = field(default_factory=dict)  # the server's metadata
    public_keys: dict[str, str] = field(default_factory=dict)  # key pair name -> public key
    network_data: dict[str, Any] = field(default_factory=dict)  # OpenStack's network_data.json; {} for none
    files: list[InjectedFile] = field(default_factory=list)  # personality files, in the order given


@dataclass(frozen=True)
class BuildRequest(Message):
    instance_uuid: str
    domain_name: str
    flavor: FlavorSpec
    image: ImageSpec | None  # None when the root disk is a volume
    nics: list[NicSpec] = field(default_factory=list)
    user_data: str | None = None  # base64, as the API received it
    request_id: str = ""
    attempt: int = 1
    alternates: list[str] = field(default_factory=list)
    block_devices: list[VolumeConnection] = field(default_factory=list)  # boot_index 0: the root disk
    metadata: InstanceMetadata | None = None  # for a config drive; None: the guest gets none
    power_on: bool = True  # False: defined and left shut off (an evacuation from compute API 2.95)


@dataclass(frozen=True)
class InstanceRef(Message):
    """Enough for a host to find and act on one of its domains."""

    instance_uuid: str
    domain_name: str
    request_id: str = ""
    reboot_type: str = "SOFT"  # only for reboots: SOFT or HARD


@dataclass(frozen=True)
class InstanceBuilt(Message):
    instance_uuid: str
    host: str
    request_id: str
    power_state: int
    vnc_host: str | None
    vnc_port: int | None
    addresses: list[dict[str, Any]] = field(default_factory=list)  # [{"addr", "version", "mac"}]


@dataclass(frozen=True)
class BuildProgress(Message):
    """A build's step on its host (``BUILD_STEP_*``) and, in the disks' step, how much of the image the
    host has (percent; 100 when it was cached already)."""

    instance_uuid: str
    host: str
    request_id: str
    step: str
    percent: int = 0


@dataclass(frozen=True)
class BuildFailed(Message):
    instance_uuid: str
    host: str
    request_id: str
    message: str
    details: str = ""
    reschedulable: bool = True


@dataclass(frozen=True)
class ActionResult(Message):
    """Outcome of an action on a host; ``error`` is empty when it worked."""

    instance_uuid: str
    host: str
    request_id: str
    # "start" | "stop" | "reboot" | "terminate" | "pause" | "unpause" | "suspend" | "resume" | "rebuild"
    # | "snapshot" | "migrate_disk" | "finish_migration" | "confirm_migration" | "revert_migration"
    # | "finish_revert_migration" | "shelve" | "shelve_offload" | "rescue" | "unrescue"
    # | "prepare_live_migration" | "live_migrate" | "abort_live_migration" | "post_live_migration"
    # | "rollback_live_migration"
    action: str
    power_state: int
    vnc_host: str | None = None
    vnc_port: int | None = None
    error: str = ""
    details: str = ""
    addresses: list[dict[str, Any]] | None = None  # rebuild: the addresses the new guest has
    image_id: str = ""  # snapshot, shelve, migrate_disk: the image the disk was uploaded to
    migration_id: int | None = None  # the migration steps: the migration this result belongs to
    offloaded: bool = False  # shelve: the domain and its files are gone from the host
    migrate_uri: str = ""  # prepare_live_migration: the libvirt URI the source migrates the guest to
    instances_dir: str = ""  # prepare_live_migration: where the destination keeps its instance directories


@dataclass(frozen=True)
class RebuildRequest(Message):
    """Re-create the instance's disk from ``build.image`` and boot it again, on the same host.

    ``power_on`` is False for a server that was stopped: its new domain is defined but not started.
    """

    build: BuildRequest
    power_on: bool = True


@dataclass(frozen=True)
class SnapshotRequest(Message):
    """Copy the instance's disk into one standalone image and upload it to ``upload_url``.

    The URL is signed for this image and expires; it is the host's only credential for the upload.
    """

    instance_uuid: str
    domain_name: str
    image_id: str
    upload_url: str
    request_id: str = ""
    disk_format: str = "qcow2"


@dataclass(frozen=True)
class MigrateDiskRequest(Message):
    """First step of a resize or cold migration, on the source host.

    The guest is powered off, its domain undefined (its XML kept) and its instance directory renamed
    ``<dir>_resize``; its disk is copied into one standalone image and uploaded to ``upload_url`` as a
    snapshot is. The guest's volumes are disconnected from the source.
    """

    instance_uuid: str
    domain_name: str
    migration_id: int
    image_id: str
    upload_url: str
    request_id: str = ""
    disk_format: str = "qcow2"


@dataclass(frozen=True)
class FinishMigrationRequest(Message):
    """Second step, on the destination: build the guest as a build does, from ``build.image`` (the
    uploaded disk) with ``build.flavor`` the new flavor, its root disk grown to the new size (never
    shrunk). Started only when ``power_on``."""

    build: BuildRequest
    migration_id: int
    power_on: bool = True


@dataclass(frozen=True)
class MigrationRef(Message):
    """A migration step that needs no more than the instance and the migration: confirm (on the source)
    and revert (on the destination)."""

    instance_uuid: str
    domain_name: str
    migration_id: int
    request_id: str = ""


@dataclass(frozen=True)
class FinishRevertRequest(Message):
    """Last step of a revert, on the source: the kept ``<dir>_resize`` and domain come back."""

    instance_uuid: str
    domain_name: str
    migration_id: int
    power_on: bool
    request_id: str = ""


@dataclass(frozen=True)
class ShelveRequest(Message):
    """Power the guest off and upload its disk to ``upload_url``; with ``offload`` the domain and its
    files then go from the host."""

    instance_uuid: str
    domain_name: str
    image_id: str
    upload_url: str
    request_id: str = ""
    offload: bool = False


@dataclass(frozen=True)
class RescueRequest(Message):
    """Boot the guest from ``rescue_image`` with its own disk as the second disk."""

    instance_uuid: str
    domain_name: str
    rescue_image: ImageSpec
    request_id: str = ""


@dataclass(frozen=True)
class PrepareLiveMigrationRequest(Message):
    """First step of a live migration, on the destination: make ready what QEMU will not bring.

    With ``block_migration`` (each host its own instance directory) the base image ``build.image`` is
    fetched into the host's cache, the instance directory made with an empty overlay of the guest's disk
    size on that base, and the config drive made again from ``build.metadata``; without it (a shared
    instance directory) the host only checks. The reply carries the ``migrate_uri`` to migrate to.
    """

    build: BuildRequest
    migration_id: int
    block_migration: bool


@dataclass(frozen=True)
class LiveMigrateRequest(Message):
    """Second step, on the source: migrate the running guest to ``dest_uri`` (peer to peer).

    ``dest_vnc_listen`` is the address the guest's VNC server listens on at the destination. With
    ``block_migration`` the disks are copied (incrementally: the destination has the base image) and the
    source's instance directory goes once the guest runs on the destination.
    """

    instance_uuid: str
    domain_name: str
    migration_id: int
    dest_host: str
    dest_uri: str
    dest_vnc_listen: str
    block_migration: bool
    request_id: str = ""
    dest_instances_dir: str = ""  # as the destination reported it; empty: found from this host's own


@dataclass(frozen=True)
class CacheImagesRequest(Message):
    """Put these images into the host's image cache now, before any server needs them. Nothing is
    reported back: an image that cannot be fetched is fetched again by the first build that needs it."""

    images: list[ImageSpec]
    request_id: str = ""


@dataclass(frozen=True)
class ConsoleOutputRequest(Message):
    """Send back the last ``length`` lines of the serial log (all of the kept tail when None)."""

    instance_uuid: str
    domain_name: str
    reply_to: str
    request_id: str = ""
    length: int | None = None


@dataclass(frozen=True)
class ConsoleOutput(Message):
    instance_uuid: str
    host: str
    output: str = ""
    error: str = ""


@dataclass(frozen=True)
class DiagnosticsRequest(Message):
    """Send back what the hypervisor says about the running guest now."""

    instance_uuid: str
    domain_name: str
    reply_to: str
    request_id: str = ""


@dataclass(frozen=True)
class Diagnostics(Message):
    """A guest's figures as its hypervisor reports them, in the compute API's standard form (2.48): CPU
    times in nanoseconds, memory in MiB, disk and NIC counters since the guest started. ``legacy`` is
    the driver's own free-form dict (libvirt: ``cpu0_time``, ``memory``, ``vda_read``, ...), the answer
    before 2.48. ``error`` is empty when it worked; ``not_running`` says the guest is not running."""

    instance_uuid: str
    host: str
    state: str = ""  # running | paused | shutdown | crashed | suspended | pending
    driver: str = ""
    hypervisor: str | None = None
    hypervisor_os: str | None = None
    num_cpus: int = 0
    num_disks: int = 0
    num_nics: int = 0
    cpu_details: list[dict[str, Any]] = field(default_factory=list)  # [{"id", "time", "utilisation"}]
    memory_details: dict[str, Any] = field(default_factory=dict)  # {"maximum", "used"}
    disk_details: list[dict[str, Any]] = field(default_factory=list)
    nic_details: list[dict[str, Any]] = field(default_factory=list)
    legacy: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    not_running: bool = False


@dataclass(frozen=True)
class GraphsRequest(Message):
    """Send back the guest's figures of the last ``seconds`` (a week at most) from the host's rings."""

    instance_uuid: str
    reply_to: str
    seconds: int = 3600
    request_id: str = ""


@dataclass(frozen=True)
class InstanceGraphs(Message):
    """A window of a guest's figures (``compute_tasks.guest_graphs``): every series has the same number of
    points (360 at most), ``step`` seconds apart from ``start`` (unix seconds), None where nothing was
    sampled. ``error`` is empty when it worked; ``no_history`` says the host has none of the guest."""

    instance_uuid: str
    host: str
    resolution: str = ""  # hour | day | week
    start: int = 0
    step: int = 0
    series: dict[str, list[float | None]] = field(default_factory=dict)
    error: str = ""
    no_history: bool = False


@dataclass(frozen=True)
class DomainState(Message):
    instance_uuid: str
    power_state: int


@dataclass(frozen=True)
class Heartbeat(Message):
    host: str
    sent_at: float  # unix time on the host
    vcpus: int
    memory_mb: int
    disk_gb: int
    hypervisor_type: str
    hypervisor_version: int
    cpu_arch: str
    domains: list[DomainState] = field(default_factory=list)
    unknown_domains: list[str] = field(default_factory=list)  # domains on the host the cloud did not make
    uptime: str = ""  # the host's ``uptime`` line when the beat was composed
    volume_connector: dict[str, Any] = field(default_factory=dict)  # what Cinder needs to reach the host
    tunnel_address: str = ""  # where the host's VXLAN endpoint listens; "" when it has no overlay
    physical_networks: list[str] = field(default_factory=list)  # the flat networks the host can plug
    network_generation: int = 0  # the data-plane state the host last applied
    # What the host's CPUs did since its previous beat (% busy of all) and the memory in use (MiB, less
    # buffers and page cache); None when the hypervisor cannot tell (or, for the CPU, on the first beat).
    cpu_used_percent: float | None = None
    memory_used_mb: int | None = None


@dataclass(frozen=True)
class InterfaceRequest(Message):
    """Plug a port's NIC into a running (or stopped) guest, or take it out; the data plane plugs or
    unplugs its tap on its own, from the host's plan."""

    instance_uuid: str
    domain_name: str
    nic: NicSpec
    request_id: str = ""


@dataclass(frozen=True)
class RulePlan(Message):
    """One security group rule of a port, compiled: ``remote`` None is anywhere; a list is exactly those
    prefixes (a remote group's members' addresses, already expanded)."""

    direction: str  # ingress (to the port) or egress (from it)
    ethertype: str = "IPv4"
    protocol: int | None = None  # None: any
    port_min: int | None = None  # ICMP: the type
    port_max: int | None = None  # ICMP: the code
    remote: list[str] | None = None


@dataclass(frozen=True)
class PortPlan(Message):
    """A port bound to the host: the tap ``device`` of a guest's NIC goes on the network's bridge."""

    port_id: str
    mac: str
    device: str
    instance_uuid: str = ""
    ips: list[str] = field(default_factory=list)
    hostname: str = ""
    admin_state_up: bool = True
    port_security_enabled: bool = True
    # Security groups: when ``filtered``, only established/related traffic and what ``rules`` allow
    # passes the port (a port with security but no groups: nothing); unfiltered, everything does.
    filtered: bool = False
    rules: list[RulePlan] = field(default_factory=list)


@dataclass(frozen=True)
class SubnetPlan(Message):
    """What the network's DHCP server hands out on one subnet."""

    subnet_id: str
    cidr: str
    gateway_ip: str | None = None
    dns_nameservers: list[str] = field(default_factory=list)
    host_routes: list[dict[str, str]] = field(default_factory=list)  # [{"destination", "nexthop"}]
    enable_dhcp: bool = True


@dataclass(frozen=True)
class Neighbour(Message):
    """A MAC on the network that lives behind another host's VXLAN endpoint."""

    mac: str
    ip: str  # the port's first address, for ARP answered locally; "" when it has none
    remote: str  # the other host's tunnel address


@dataclass(frozen=True)
class NetworkPlan(Message):
    """One network as one host must have it.

    ``ports`` are the ports bound to this host. ``dhcp_mac``/``dhcp_ips`` are the network's DHCP port:
    every host with ports on the network serves DHCP for its own ports from that one address, which never
    crosses the overlay. ``leases`` are every port of the network (for names in DNS and the leases of this
    host's ports); ``remotes`` the other hosts' tunnel addresses (flooding goes to them) and
    ``neighbours`` where each remote MAC lives (pushed, not learnt)."""

    network_id: str
    network_type: str  # "vxlan" | "flat"
    mtu: int
    segmentation_id: int | None = None
    physical_network: str | None = None
    subnets: list[SubnetPlan] = field(default_factory=list)
    ports: list[PortPlan] = field(default_factory=list)
    dhcp_mac: str = ""
    dhcp_ips: list[str] = field(default_factory=list)
    leases: list[PortPlan] = field(default_factory=list)
    remotes: list[str] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)


@dataclass(frozen=True)
class RouterLeg(Message):
    """One of a router's ports, on a network the same plan carries: its device inside the router's
    namespace holds ``addresses`` ("ip/prefixlen") with ``mac``."""

    port_id: str
    network_id: str
    mac: str
    addresses: list[str] = field(default_factory=list)
    mtu: int = 1500


@dataclass(frozen=True)
class FloatingPlan(Message):
    """A floating address the router answers for on its gateway, translated to and from ``fixed_ip``."""

    floating_ip: str
    fixed_ip: str


@dataclass(frozen=True)
class RouterPlan(Message):
    """A router this host runs: a namespace routing between its ``interfaces``; with a ``gateway`` on an
    external network, a default route to ``gateway_nexthop``, the subnets behind it translated to the
    gateway's address when ``snat``, and each of ``floating`` translated both ways."""

    router_id: str
    interfaces: list[RouterLeg] = field(default_factory=list)
    gateway: RouterLeg | None = None
    gateway_nexthop: str = ""
    snat: bool = True
    floating: list[FloatingPlan] = field(default_factory=list)


@dataclass(frozen=True)
class HostNetworkPlan(Message):
    """Everything a host's data plane should be: a network or router not listed here has no business on
    the host. Applying it twice is applying it once."""

    host: str
    generation: int
    networks: list[NetworkPlan] = field(default_factory=list)
    routers: list[RouterPlan] = field(default_factory=list)


@dataclass(frozen=True)
class NetworkStateApplied(Message):
    """What a host did with a HostNetworkPlan (or found when it checked on its own): the ports whose
    devices are on their bridges, and what it had to mend."""

    host: str
    generation: int
    plugged_ports: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    error: str = ""


_NESTED: dict[tuple[str, str], type[Message]] = {
    ("BuildRequest", "flavor"): FlavorSpec,
    ("BuildRequest", "image"): ImageSpec,
    ("BuildRequest", "nics"): NicSpec,
    ("BuildRequest", "metadata"): InstanceMetadata,
    ("InstanceMetadata", "files"): InjectedFile,
    ("RebuildRequest", "build"): BuildRequest,
    ("Heartbeat", "domains"): DomainState,
    ("BuildRequest", "block_devices"): VolumeConnection,
    ("VolumeConnection", "image"): ImageSpec,
    ("VolumeRequest", "volume"): VolumeConnection,
    ("FinishMigrationRequest", "build"): BuildRequest,
    ("RescueRequest", "rescue_image"): ImageSpec,
    ("PrepareLiveMigrationRequest", "build"): BuildRequest,
    ("InterfaceRequest", "nic"): NicSpec,
    ("CacheImagesRequest", "images"): ImageSpec,
    ("NetworkPlan", "subnets"): SubnetPlan,
    ("NetworkPlan", "ports"): PortPlan,
    ("PortPlan", "rules"): RulePlan,
    ("NetworkPlan", "leases"): PortPlan,
    ("NetworkPlan", "neighbours"): Neighbour,
    ("HostNetworkPlan", "networks"): NetworkPlan,
    ("HostNetworkPlan", "routers"): RouterPlan,
    ("RouterPlan", "interfaces"): RouterLeg,
    ("RouterPlan", "gateway"): RouterLeg,
    ("RouterPlan", "floating"): FloatingPlan,
}


_signer: Callable[[], signing.Signer] | None = None
_public_key_of: Callable[[str], Any] | None = None


def use_signer(signer: Callable[[], signing.Signer]) -> None:
    """How this process signs what it sends: the control plane's key, or the key of the host a task runs as."""
    global _signer
    _signer = signer


def use_verifier(public_key_of: Callable[[str], Any]) -> None:
    """Whom this process believes: ``public_key_of(sender)`` is the sender's public key, or None."""
    global _public_key_of
    _public_key_of = public_key_of


def sign(name: str, recipient: str, body: dict[str, Any]) -> dict[str, Any]:
    if _signer is None:
        raise RuntimeError("this process has no signing key: rpc.use_signer() was never called")
    return _signer().sign(name, recipient, body)


def verify(
    name: str, recipient: str, body: Any, auth: Any, *, public_key_of: Callable[[str], Any] | None = None
) -> signing.Verified:
    """The sender of a message this process received, or ``signing.Refused``. ``public_key_of`` stands
    in for the process's verifier (``use_verifier``) for this message."""
    public_key_of = public_key_of or _public_key_of
    if public_key_of is None:
        raise signing.Refused(
            signing.UNKNOWN_SENDER, "this process believes nobody: rpc.use_verifier() was never called"
        )
    return signing.verify(name, recipient, body, auth, public_key_of)


def _send(name: str, queue: str, message: Message, expires: float | datetime | None = None) -> None:
    body = message.to_dict()
    request_id = getattr(message, "request_id", "") or request_ids.current()
    if request_id:
        body[request_ids.MESSAGE_KEY] = request_id
    # The arguments' text for Celery's logs and events is the message's kind alone: Celery would otherwise
    # write out every message (a costly recursive repr, on every send) with what it carries, a user's
    # token or user data included.
    current_app.send_task(
        name,
        args=[body, sign(name, queue, body)],
        queue=queue,
        expires=expires,
        argsrepr=f"({type(message).__name__})",
        kwargsrepr="{}",
        declare=[] if (current_app.conf.broker_url, queue) in _declared else None,
    )
    _declared.add((current_app.conf.broker_url, queue))


# The queues this process has sent to, by broker. Celery declares a message's queue on the broker before it sends
# it (so that a message to a host whose worker never ran waits for it); kombu remembers that per
# connection, but only after copying the queue and binding the copy for every message. A queue is
# declared with the first message this process sends to it; queues are durable, and every worker
# declares its own again when it starts.
_declared: set[tuple[str, str]] = set()


# --- control plane -> hosts -------------------------------------------------------------------------


def build_and_run_instance(host: str, request: BuildRequest) -> None:
    _send(BUILD_AND_RUN_INSTANCE, compute_queue(host), request)


def start_instance(host: str, ref: InstanceRef) -> None:
    _send(START_INSTANCE, compute_queue(host), ref)


def stop_instance(host: str, ref: InstanceRef) -> None:
    _send(STOP_INSTANCE, compute_queue(host), ref)


def reboot_instance(host: str, ref: InstanceRef) -> None:
    _send(REBOOT_INSTANCE, compute_queue(host), ref)


def terminate_instance(host: str, ref: InstanceRef) -> None:
    _send(TERMINATE_INSTANCE, compute_queue(host), ref)


def pause_instance(host: str, ref: InstanceRef) -> None:
    _send(PAUSE_INSTANCE, compute_queue(host), ref)


def unpause_instance(host: str, ref: InstanceRef) -> None:
    _send(UNPAUSE_INSTANCE, compute_queue(host), ref)


def suspend_instance(host: str, ref: InstanceRef) -> None:
    _send(SUSPEND_INSTANCE, compute_queue(host), ref)


def resume_instance(host: str, ref: InstanceRef) -> None:
    _send(RESUME_INSTANCE, compute_queue(host), ref)


def rebuild_instance(host: str, request: RebuildRequest) -> None:
    _send(REBUILD_INSTANCE, compute_queue(host), request)


def snapshot_instance(host: str, request: SnapshotRequest) -> None:
    _send(SNAPSHOT_INSTANCE, compute_queue(host), request)


def attach_volume(host: str, request: VolumeRequest) -> None:
    _send(ATTACH_VOLUME, compute_queue(host), request)


def detach_volume(host: str, request: VolumeRequest) -> None:
    _send(DETACH_VOLUME, compute_queue(host), request)


def migrate_disk(host: str, request: MigrateDiskRequest, *, expires: datetime | None = None) -> None:
    """To the source host of a resize or cold migration. ``expires``: the step's deadline, after which
    the control plane has given up on it; a copy delivered later (a broker's redelivery) is dropped
    unread instead of taking the guest down again."""
    _send(MIGRATE_DISK, compute_queue(host), request, expires=expires)


def finish_migration(host: str, request: FinishMigrationRequest, *, expires: datetime | None = None) -> None:
    """To the destination host; ``expires`` as for ``migrate_disk``."""
    _send(FINISH_MIGRATION, compute_queue(host), request, expires=expires)


def confirm_migration(host: str, request: MigrationRef) -> None:
    """To the source host, once the user confirmed."""
    _send(CONFIRM_MIGRATION, compute_queue(host), request)


def revert_migration(host: str, request: MigrationRef) -> None:
    """To the destination host."""
    _send(REVERT_MIGRATION, compute_queue(host), request)


def finish_revert_migration(host: str, request: FinishRevertRequest) -> None:
    """To the source host, after the destination reverted."""
    _send(FINISH_REVERT_MIGRATION, compute_queue(host), request)


def shelve_instance(host: str, request: ShelveRequest) -> None:
    _send(SHELVE_INSTANCE, compute_queue(host), request)


def shelve_offload_instance(host: str, ref: InstanceRef) -> None:
    _send(SHELVE_OFFLOAD_INSTANCE, compute_queue(host), ref)


def rescue_instance(host: str, request: RescueRequest) -> None:
    _send(RESCUE_INSTANCE, compute_queue(host), request)


def unrescue_instance(host: str, ref: InstanceRef) -> None:
    _send(UNRESCUE_INSTANCE, compute_queue(host), ref)


def prepare_live_migration(host: str, request: PrepareLiveMigrationRequest) -> None:
    """To the destination host of a live migration."""
    _send(PREPARE_LIVE_MIGRATION, compute_queue(host), request)


def live_migrate(host: str, request: LiveMigrateRequest) -> None:
    """To the source host, once the destination is prepared."""
    _send(LIVE_MIGRATE, compute_queue(host), request)


def abort_live_migration(host: str, ref: MigrationRef) -> None:
    """To the source host: cancel the running migration job (the live_migrate report says it failed)."""
    _send(ABORT_LIVE_MIGRATION, compute_queue(host), ref)


def force_complete_live_migration(host: str, ref: MigrationRef) -> None:
    """To the source host: switch the running migration to post-copy, or allow the downtime it needs."""
    _send(FORCE_COMPLETE_LIVE_MIGRATION, compute_queue(host), ref)


def post_live_migration(host: str, ref: MigrationRef) -> None:
    """To the destination host, after the source reported success."""
    _send(POST_LIVE_MIGRATION, compute_queue(host), ref)


def attach_interface(host: str, request: InterfaceRequest) -> None:
    _send(ATTACH_INTERFACE, compute_queue(host), request)


def detach_interface(host: str, request: InterfaceRequest) -> None:
    _send(DETACH_INTERFACE, compute_queue(host), request)


def apply_network_state(host: str, plan: HostNetworkPlan) -> None:
    _send(APPLY_NETWORK_STATE, compute_queue(host), plan)


def cache_images(host: str, request: CacheImagesRequest, *, expires: datetime | None = None) -> None:
    """To each host of an aggregate: fetch the images into the cache (``expires``: when the URLs do)."""
    _send(CACHE_IMAGES, compute_queue(host), request, expires=expires)


def rollback_live_migration(host: str, ref: MigrationRef) -> None:
    """To the destination host, after the migration failed: what prepare made goes."""
    _send(ROLLBACK_LIVE_MIGRATION, compute_queue(host), ref)


# --- request and reply: the console log, diagnostics and graphs ------------------------------------
#
# The calls that wait for an answer. The caller declares a private reply queue on the broker, sends
# the request naming it, and waits a bounded time for one message there; the host publishes its answer
# to that queue through the default exchange. The queue expires by itself when unused (Redis and
# RabbitMQ both honour x-expires), so an answer that comes after the caller gave up is dropped with it,
# and a request that waited too long in the host's queue expires unread.

REPLY_QUEUE_EXPIRES_SECONDS = 120


def reply_queue(name: str) -> Queue:
    # Both sides declare it with exactly these arguments (RabbitMQ refuses a redeclaration that differs).
    return Queue(
        name,
        exchange=Exchange(""),
        routing_key=name,
        durable=False,
        auto_delete=False,
        expires=REPLY_QUEUE_EXPIRES_SECONDS,
    )


class NoReply(Exception):
    """The host did not answer in time (it is down, busy, or the message was lost)."""


def _ask(host: str, task: str, signed_as: str, request: Message, *, timeout: float, what: str) -> dict[str, Any]:
    """Send ``request`` (which has a ``reply_to`` field) as ``task`` to ``host`` and wait up to
    ``timeout`` seconds for its answer, which the host signs as ``signed_as`` for the reply queue.

    Only an answer signed by ``host`` for this reply queue counts: anyone else who writes to the queue
    (it is on a broker every host reaches) is ignored and logged. ``what`` names the answer in errors.
    """
    name = f"reply.{uuid.uuid4().hex}"
    request = dataclasses.replace(request, reply_to=name)  # type: ignore[type-var]
    answers: list[dict[str, Any]] = []

    def receive(answer: Any, message: Any) -> None:
        message.ack()
        try:
            body = answer["message"]
            sender = verify(signed_as, name, body, answer.get("auth")).sender
        except (signing.Refused, KeyError, TypeError) as exc:
            log.warning("Dropped an answer (%s) on %s: %s", what, name, exc)
            return
        if sender != host:
            log.warning("Dropped an answer (%s) on %s from %s, which was not asked", what, name, sender)
            return
        answers.append(body)

    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        channel = conn.channel()
        queue = reply_queue(name)(channel)
        queue.declare()
        try:
            with conn.Consumer(queue, callbacks=[receive], accept=["json"]):
                _send(task, compute_queue(host), request, expires=timeout)
                deadline = time.monotonic() + timeout
                while not answers:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise NoReply(f"host {host} did not send the {what} within {timeout:g}s")
                    try:
                        conn.drain_events(timeout=min(left, 1.0))
                    except TimeoutError:
                        continue
        finally:
            with contextlib.suppress(Exception):
                queue.delete()
            channel.close()
    return answers[0]


def _answer(signed_as: str, reply_to: str, result: Message) -> None:
    """A host's answer to ``_ask``, signed as ``signed_as`` for that reply queue."""
    body = result.to_dict()
    with current_app.producer_or_acquire() as producer:
        producer.publish(
            {"message": body, "auth": sign(signed_as, reply_to, body)},
            exchange="",
            routing_key=reply_to,
            serializer="json",
            declare=[reply_queue(reply_to)],
            expiration=REPLY_QUEUE_EXPIRES_SECONDS,
            retry=True,
            retry_policy={"max_retries": 2},
        )


def get_console_output(host: str, request: ConsoleOutputRequest, *, timeout: float) -> ConsoleOutput:
    """Ask ``host`` for the tail of an instance's serial log and wait up to ``timeout`` seconds."""
    answer = _ask(host, GET_CONSOLE_OUTPUT, CONSOLE_OUTPUT_REPLY, request, timeout=timeout, what="console output")
    return ConsoleOutput.from_dict(answer)


def reply_console_output(reply_to: str, result: ConsoleOutput) -> None:
    """The host's answer to ``get_console_output``, signed for that reply queue."""
    _answer(CONSOLE_OUTPUT_REPLY, reply_to, result)


def get_diagnostics(host: str, request: DiagnosticsRequest, *, timeout: float) -> Diagnostics:
    """Ask ``host`` what its hypervisor says about an instance and wait up to ``timeout`` seconds."""
    answer = _ask(host, GET_DIAGNOSTICS, DIAGNOSTICS_REPLY, request, timeout=timeout, what="diagnostics")
    return Diagnostics.from_dict(answer)


def reply_diagnostics(reply_to: str, result: Diagnostics) -> None:
    """The host's answer to ``get_diagnostics``, signed for that reply queue."""
    _answer(DIAGNOSTICS_REPLY, reply_to, result)


def get_instance_graphs(host: str, request: GraphsRequest, *, timeout: float) -> InstanceGraphs:
    """Ask ``host`` for a window of an instance's graphs and wait up to ``timeout`` seconds."""
    answer = _ask(host, GET_INSTANCE_GRAPHS, INSTANCE_GRAPHS_REPLY, request, timeout=timeout, what="graphs")
    return InstanceGraphs.from_dict(answer)


def reply_instance_graphs(reply_to: str, result: InstanceGraphs) -> None:
    """The host's answer to ``get_instance_graphs``, signed for that reply queue."""
    _answer(INSTANCE_GRAPHS_REPLY, reply_to, result)


# --- anything -> conductor --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleRequest(Message):
    instance_uuid: str
    request_id: str = ""
    # The Keystone token of the user who asked for the server, only when new volumes are to be made for
    # it: Cinder puts a volume in the project of the token that asks for it. Never logged.
    user_token: str = field(default="", repr=False)


def schedule_and_build(request: ScheduleRequest) -> None:
    _send(SCHEDULE_AND_BUILD, CONDUCTOR_QUEUE, request)


@dataclass(frozen=True)
class MoveRequest(Message):
    """A resize or cold migration waits for its destination."""

    migration_id: int
    request_id: str = ""


def move_server(request: MoveRequest) -> None:
    _send(MOVE_SERVER, CONDUCTOR_QUEUE, request)


def live_migrate_server(request: MoveRequest) -> None:
    _send(LIVE_MIGRATE_SERVER, CONDUCTOR_QUEUE, request)


def evacuate_server(request: MoveRequest) -> None:
    _send(EVACUATE_SERVER, CONDUCTOR_QUEUE, request)


@dataclass(frozen=True)
class UnshelveRequest(Message):
    """An offloaded server waits for a host (``host``: the one an admin named)."""

    instance_uuid: str
    request_id: str = ""
    host: str = ""


def unshelve_server(request: UnshelveRequest) -> None:
    _send(UNSHELVE_SERVER, CONDUCTOR_QUEUE, request)


def instance_built(result: InstanceBuilt) -> None:
    _send(INSTANCE_BUILT, CONDUCTOR_QUEUE, result)


def build_progress(progress: BuildProgress) -> None:
    # Only worth its freshness: a later step or percent follows, and the build's end says the rest.
    _send(BUILD_PROGRESS, CONDUCTOR_QUEUE, progress, expires=BUILD_PROGRESS_TTL_SECONDS)


def build_failed(result: BuildFailed) -> None:
    _send(BUILD_FAILED, CONDUCTOR_QUEUE, result)


def action_done(result: ActionResult) -> None:
    _send(ACTION_DONE if not result.error else ACTION_FAILED, CONDUCTOR_QUEUE, result)


def heartbeat(beat: Heartbeat) -> None:
    # A heartbeat is only worth its freshness: one that waited longer than this is dropped unread.
    _send(HEARTBEAT, CONDUCTOR_QUEUE, beat, expires=HEARTBEAT_TTL_SECONDS)


@dataclass(frozen=True)
class MigrationProgress(Message):
    """How far a running live migration is, from the source's migration job (bytes)."""

    migration_id: int
    host: str
    memory_total_bytes: int = 0
    memory_processed_bytes: int = 0
    memory_remaining_bytes: int = 0
    disk_total_bytes: int = 0
    disk_processed_bytes: int = 0
    disk_remaining_bytes: int = 0


def migration_progress(progress: MigrationProgress) -> None:
    # Like a heartbeat, only worth its freshness: a newer one follows within a second.
    _send(MIGRATION_PROGRESS, CONDUCTOR_QUEUE, progress, expires=MIGRATION_PROGRESS_TTL_SECONDS)


def network_state_applied(result: NetworkStateApplied) -> None:
    _send(NETWORK_STATE_APPLIED, CONDUCTOR_QUEUE, result)


def volume_done(result: VolumeResult) -> None:
    _send(VOLUME_ATTACHED if result.action == "attach" else VOLUME_DETACHED, CONDUCTOR_QUEUE, result)


def release_volumes(request: VolumeRelease) -> None:
    _send(RELEASE_VOLUMES, CONDUCTOR_QUEUE, request)
