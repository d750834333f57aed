"""Configuration of one compute host, read once from the environment at start-up.

Every value has a default that works on a single machine. An invalid value stops the worker before it
consumes anything, with a message naming the variable, so a mistyped setting never becomes a host that
half works.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent

DRIVERS = ("libvirt", "fake")
DATAPLANES = ("linux", "none")
VIRT_TYPES = ("qemu", "kvm")
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp", "memory")

# The host name becomes part of a queue name (compute.<host>) and of a directory name.
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class ConfigError(ValueError):
    """A setting in the environment is missing or invalid; the message names it."""


@dataclass(frozen=True)
class HostConfig:
    host: str
    broker_url: str
    driver: str
    libvirt_uri: str
    virt_type: str
    state_dir: Path
    heartbeat_interval: float
    vnc_listen: str
    vnc_address: str
    http_timeout: float
    shutdown_timeout: float
    # Volumes: the address Cinder's targets see this host as, where NFS shares are mounted, and how long
    # a guest may take to release a disk being detached.
    my_ip: str = "127.0.0.1"
    nfs_mount_point_base: Path | None = None
    volume_detach_timeout: float = 30.0
    # Simulated hosts served by this one process (COMPUTE_HOSTS); empty for an ordinary host. Each has
    # its own queue, heartbeat and state directory under ``state_dir``; see ``for_host``.
    hosts: tuple[str, ...] = ()
    # The host's private key and the control plane's public key, as `manage.py host_enroll` wrote them.
    credentials_file: Path | None = None
    # The address other hosts' libvirtds and QEMUs reach this host at for migrations (its libvirtd's
    # TCP port and QEMU's migration ports listen there).
    migration_address: str = "127.0.0.1"
    # A live migration's transfer speed limit in MiB/s (0: none), as Nova's ``live_migration_bandwidth``.
    live_migration_bandwidth: int = 0
    # Where instance disks and cached images live, when not under ``state_dir`` (a directory every host
    # mounts, for live migration on shared storage: both must then be shared, as the disks' base images
    # are in the cache).
    instances_dir_override: Path | None = None
    images_dir_override: Path | None = None
    # The network data plane (compute_tasks.dataplane): "linux" programs bridges, VXLAN, dnsmasq and
    # nftables; "none" applies nothing (the fake driver, libvirt's test driver). ``tunnel_address`` is the
    # host's VXLAN endpoint on the network between the hosts; ``network_namespace`` the namespace the data
    # plane lives in (empty: the host's own); ``physical_networks`` maps a flat network's name to the
    # bridge (or interface) that carries it.
    dataplane: str = "none"
    tunnel_address: str = ""
    vxlan_port: int = 4789
    network_namespace: str = ""
    physical_networks: tuple[tuple[str, str], ...] = ()
    network_check_interval: float = 10.0
    # How often the guests are sampled for their graphs (compute_tasks.guest_graphs); 0: never. At most the
    # finest ring's step (10 s), or its slots would have holes.
    graphs_interval: float = 10.0
    # A build done within this long sends no progress reports of its own (compute_tasks.progress.BuildSteps).
    build_quiet_seconds: float = 1.0
    # Where the metadata agent asks the control plane for a guest's metadata, and how long it waits.
    metadata_url: str = "http://127.0.0.1:8000/internal/metadata"
    metadata_timeout: float = 5.0
    # The host's Prometheus exporter (compute_tasks.host_metrics): the address it listens on (None: off) and
    # the bearer token a scraper shows, kept out of the repr so that a logged configuration never shows it.
    metrics_address: tuple[str, int] | None = None
    metrics_token: str = dataclasses.field(default="", repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HostConfig:
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        hosts = parse_host_list(get("COMPUTE_HOSTS", ""))
        host = get("COMPUTE_HOST", hosts[0] if hosts else socket.gethostname())
        if not _HOST_RE.match(host):
            raise ConfigError(f"COMPUTE_HOST={host!r} is not a valid host name: use letters, digits, '.', '_' and '-'")
        if hosts and host not in hosts:
            raise ConfigError(f"COMPUTE_HOST={host!r} is not one of the hosts COMPUTE_HOSTS names")

        broker_url = get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
        scheme = urlsplit(broker_url).scheme
        if scheme not in BROKER_SCHEMES:
            raise ConfigError(f"CELERY_BROKER_URL has scheme {scheme!r}; expected one of {', '.join(BROKER_SCHEMES)}")

        driver = get("COMPUTE_DRIVER", "libvirt").lower()
        if driver not in DRIVERS:
            raise ConfigError(f"COMPUTE_DRIVER={driver!r} is not one of {', '.join(DRIVERS)}")

        virt_type = get("COMPUTE_VIRT_TYPE", "qemu").lower()
        if virt_type not in VIRT_TYPES:
            raise ConfigError(f"COMPUTE_VIRT_TYPE={virt_type!r} is not one of {', '.join(VIRT_TYPES)}")

        libvirt_uri = get("COMPUTE_LIBVIRT_URI", "qemu:///system")
        if "://" not in libvirt_uri:
            raise ConfigError(f"COMPUTE_LIBVIRT_URI={libvirt_uri!r} is not a libvirt URI (e.g. qemu:///system)")

        # Many simulated hosts keep their directories side by side under one state directory.
        default_state_dir = REPO_ROOT / "var" / "compute" / ("" if hosts else host)
        state_dir = Path(get("COMPUTE_STATE_DIR", str(default_state_dir))).expanduser()
        if not state_dir.is_absolute():
            state_dir = state_dir.resolve()

        vnc_listen = get("COMPUTE_VNC_LISTEN", "127.0.0.1")
        # QEMU's VNC servers ask for no password: whoever reaches one sees and types on that guest's
        # screen. So they listen on the one address the console proxy connects to, never on every
        # address of the host (a bridge address guests can reach among them).
        if _parse_ip("COMPUTE_VNC_LISTEN", vnc_listen).is_unspecified:
            raise ConfigError(
                f"COMPUTE_VNC_LISTEN={vnc_listen!r} would open every guest's screen on all of this host's "
                "addresses: name the address the console proxy connects to (127.0.0.1 when it runs here)"
            )
        vnc_address = get("COMPUTE_VNC_ADDRESS", vnc_listen)
        my_ip = str(_parse_ip("COMPUTE_MY_IP", get("COMPUTE_MY_IP", _route_address(broker_url))))
        migration_address = get("COMPUTE_MIGRATION_ADDRESS", my_ip)
        if _parse_ip("COMPUTE_MIGRATION_ADDRESS", migration_address).is_unspecified:
            raise ConfigError(
                f"COMPUTE_MIGRATION_ADDRESS={migration_address!r} is not an address other hosts can reach: name "
                "this host's address on the network between the hypervisors"
            )

        dataplane = get("COMPUTE_DATAPLANE", default_dataplane(driver, libvirt_uri, simulated=bool(hosts))).lower()
        if dataplane not in DATAPLANES:
            raise ConfigError(f"COMPUTE_DATAPLANE={dataplane!r} is not one of {', '.join(DATAPLANES)}")
        if dataplane == "linux" and hosts:
            raise ConfigError(
                "COMPUTE_DATAPLANE=linux programs one host's network: it cannot serve the simulated hosts of "
                "COMPUTE_HOSTS (use COMPUTE_DATAPLANE=none there)"
            )
        tunnel_address = get("COMPUTE_TUNNEL_ADDRESS", "")
        if tunnel_address:
            parsed = _parse_ip("COMPUTE_TUNNEL_ADDRESS", tunnel_address)
            if parsed.is_unspecified or parsed.is_multicast or parsed.version != 4:
                raise ConfigError(
                    f"COMPUTE_TUNNEL_ADDRESS={tunnel_address!r} must be this host's IPv4 address on the network "
                    "between the hosts"
                )
        vxlan_port = _non_negative_int(env, "COMPUTE_VXLAN_PORT", 4789)
        if not 1 <= vxlan_port <= 65535:
            raise ConfigError(f"COMPUTE_VXLAN_PORT={vxlan_port!r} is not a UDP port")
        network_namespace = get("COMPUTE_NETWORK_NAMESPACE", "")
        if network_namespace and not _NETNS_RE.match(network_namespace):
            raise ConfigError(
                f"COMPUTE_NETWORK_NAMESPACE={network_namespace!r} is not a namespace name: letters, digits, '_' "
                "and '-', at most 32 characters"
            )

        metadata_url = get("COMPUTE_METADATA_URL", f"http://{_url_host(broker_url)}:8000/internal/metadata")
        if urlsplit(metadata_url).scheme not in ("http", "https") or not urlsplit(metadata_url).hostname:
            raise ConfigError(f"COMPUTE_METADATA_URL={metadata_url!r} is not an http(s) URL")

        metrics_address = None
        metrics_token = env.get("COMPUTE_METRICS_TOKEN", "").strip()
        if get("COMPUTE_METRICS_ADDRESS", ""):
            metrics_address = parse_listen_address("COMPUTE_METRICS_ADDRESS", get("COMPUTE_METRICS_ADDRESS", ""))
            if not metrics_token:
                raise ConfigError(
                    "COMPUTE_METRICS_ADDRESS is set, so COMPUTE_METRICS_TOKEN must be too: the exporter is never open"
                )

        graphs_interval = _positive_seconds(env, "COMPUTE_GRAPHS_INTERVAL", 10.0, allow_zero=True)
        if graphs_interval > 10:
            raise ConfigError(f"COMPUTE_GRAPHS_INTERVAL={graphs_interval:g} is more than the graphs' finest step, 10 s")

        return cls(
            graphs_interval=graphs_interval,
            build_quiet_seconds=_positive_seconds(env, "COMPUTE_BUILD_QUIET_SECONDS", 1.0, allow_zero=True),
            metrics_address=metrics_address,
            metrics_token=metrics_token,
            metadata_url=metadata_url.rstrip("/"),
            metadata_timeout=_positive_seconds(env, "COMPUTE_METADATA_TIMEOUT", 5.0),
            dataplane=dataplane,
            tunnel_address=tunnel_address,
            vxlan_port=vxlan_port,
            network_namespace=network_namespace,
            physical_networks=parse_physical_networks(get("COMPUTE_PHYSICAL_NETWORKS", "")),
            network_check_interval=_positive_seconds(env, "COMPUTE_NETWORK_CHECK_INTERVAL", 10.0),
            host=host,
            broker_url=broker_url,
            driver=driver,
            libvirt_uri=libvirt_uri,
            virt_type=virt_type,
            state_dir=state_dir,
            heartbeat_interval=_positive_seconds(env, "COMPUTE_HEARTBEAT_INTERVAL", 5.0),
            vnc_listen=vnc_listen,
            vnc_address=vnc_address,
            http_timeout=_positive_seconds(env, "COMPUTE_HTTP_TIMEOUT", 30.0),
            shutdown_timeout=_positive_seconds(env, "COMPUTE_SHUTDOWN_TIMEOUT", 60.0, allow_zero=True),
            my_ip=my_ip,
            nfs_mount_point_base=Path(get("COMPUTE_NFS_MOUNT_POINT_BASE", str(state_dir / "mnt"))).expanduser(),
            volume_detach_timeout=_positive_seconds(env, "COMPUTE_VOLUME_DETACH_TIMEOUT", 30.0),
            hosts=hosts,
            credentials_file=Path(get("COMPUTE_CREDENTIALS", str(state_dir / "credentials.json"))).expanduser(),
            migration_address=migration_address,
            live_migration_bandwidth=_non_negative_int(env, "COMPUTE_LIVE_MIGRATION_BANDWIDTH"),
            instances_dir_override=Path(env["COMPUTE_INSTANCES_DIR"]).expanduser()
            if env.get("COMPUTE_INSTANCES_DIR", "").strip()
            else None,
            images_dir_override=Path(env["COMPUTE_IMAGES_DIR"]).expanduser()
            if env.get("COMPUTE_IMAGES_DIR", "").strip()
            else None,
        )

    @property
    def all_hosts(self) -> tuple[str, ...]:
        """Every host this process serves: the simulated ones, or just ``host``."""
        return self.hosts or (self.host,)

    def for_host(self, name: str) -> HostConfig:
        """The configuration of one simulated host: its own name and state directory, nothing shared."""
        if not self.hosts:
            return self
        if name not in self.hosts:
            raise ValueError(f"{name!r} is not one of this process's hosts")
        return dataclasses.replace(
            self,
            host=name,
            hosts=(),
            state_dir=self.state_dir / name,
            nfs_mount_point_base=self.state_dir / name / "mnt",
            instances_dir_override=None,
            images_dir_override=None,
        )

    @property
    def images_dir(self) -> Path:
        return self.images_dir_override or self.state_dir / "images"

    @property
    def instances_dir(self) -> Path:
        return self.instances_dir_override or self.state_dir / "instances"

    def instance_dir(self, instance_uuid: str) -> Path:
        return instances_dir_entry(self.instances_dir, instance_uuid)

    @property
    def nfs_mount_base(self) -> Path:
        return self.nfs_mount_point_base or self.state_dir / "mnt"


def default_dataplane(driver: str, libvirt_uri: str, *, simulated: bool = False) -> str:
    """A host whose guests are real has a real data plane; the fake driver, libvirt's test driver and
    the simulated hosts of COMPUTE_HOSTS have no guests to plug, so they get the null one."""
    if simulated or driver == "fake" or libvirt_uri.startswith("test:"):
        return "none"
    return "linux"


_NETNS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_PHYSNET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_physical_networks(value: str) -> tuple[tuple[str, str], ...]:
    """``COMPUTE_PHYSICAL_NETWORKS``: ``name:device`` pairs separated by commas, e.g. ``public:br-public``;
    the device is a bridge (ports go on it) or an interface (enslaved to a bridge made for it)."""
    pairs: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, sep, device = item.partition(":")
        name, device = name.strip(), device.strip()
        if not sep or not _PHYSNET_RE.match(name) or not _IFNAME_RE.match(device):
            raise ConfigError(
                f"COMPUTE_PHYSICAL_NETWORKS: {item!r} is not 'name:device' (a device name has at most 15 characters)"
            )
        if name in pairs:
            raise ConfigError(f"COMPUTE_PHYSICAL_NETWORKS names {name!r} twice")
        pairs[name] = device
    return tuple(pairs.items())


def parse_listen_address(name: str, value: str) -> tuple[str, int]:
    """``host:port`` (an IPv6 address in brackets: ``[::1]:9180``) as (address, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{name}={value!r} is not an address and port such as 127.0.0.1:9180")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"{name}={value!r}: write an IPv6 address in brackets, e.g. [::1]:9180")
    _parse_ip(name, host)
    return host, int(port)


MAX_HOSTS = 10_000
_RANGE_RE = re.compile(
    r"^(?P<prefix>[A-Za-z0-9._-]*)\[(?P<first>[0-9]+)-(?P<last>[0-9]+)\](?P<suffix>[A-Za-z0-9._-]*)$"
)


def parse_host_list(value: str) -> tuple[str, ...]:
    """``COMPUTE_HOSTS``: host names separated by commas; ``sim-[001-100]`` stands for sim-001 ... sim-100
    (the width of the first number is kept)."""
    names: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        match = _RANGE_RE.match(item)
        if match:
            first, last = match.group("first"), match.group("last")
            if int(last) < int(first) or int(last) - int(first) >= MAX_HOSTS:
                raise ConfigError(f"COMPUTE_HOSTS: the range in {item!r} is empty or too large")
            names.extend(
                f"{match.group('prefix')}{number:0{len(first)}d}{match.group('suffix')}"
                for number in range(int(first), int(last) + 1)
            )
        elif _HOST_RE.match(item):
            names.append(item)
        else:
            raise ConfigError(f"COMPUTE_HOSTS: {item!r} is not a host name or a range like sim-[1-100]")
    unique = tuple(dict.fromkeys(names))
    if len(unique) > MAX_HOSTS:
        raise ConfigError(f"COMPUTE_HOSTS names {len(unique)} hosts; at most {MAX_HOSTS}")
    return unique


def instances_dir_entry(instances_dir: Path, instance_uuid: str) -> Path:
    """The directory of one instance; the uuid is canonicalised so that it can never escape the parent."""
    return instances_dir / canonical_uuid(instance_uuid)


def canonical_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid instance uuid") from None


def _parse_ip(name: str, value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an IP address") from None


def _positive_seconds(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}={raw!r} must be a {'non-negative' if allow_zero else 'positive'} number")
    return value


def _url_host(url: str) -> str:
    """The host part of a URL, as it goes back into one (an IPv6 address in brackets)."""
    host = urlsplit(url).hostname or "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _route_address(broker_url: str) -> str:
    """This host's address on the way to the broker (no packet is sent), or loopback when there is none."""
    target = urlsplit(broker_url).hostname or "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def _non_negative_int(env, name: str, default: int = 0) -> int:
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None
    if number < 0:
        raise ConfigError(f"{name}={value!r} must not be negative")
    return number
