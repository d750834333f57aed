"""The libvirt ``<disk>`` of a Cinder volume, built from the ``connection_info`` Cinder gave for this host.

``driver_volume_type`` decides the disk:

- ``nfs``: a file. The share ``export`` is mounted at ``<NFS mount point base>/<md5(export)>`` (as
  os-brick and Nova name it), and the volume is the file ``name`` in it.
- ``iscsi``: a network disk QEMU opens itself (libiscsi): ``target_portal``, ``target_iqn``,
  ``target_lun``, and with ``auth_method`` CHAP a libvirt secret holding the password.
- ``rbd``: a network disk through QEMU's librbd: ``name`` (pool/image), ``hosts``/``ports`` of the
  monitors, and with ``auth_enabled`` the Ceph user and the uuid of the libvirt secret holding its key
  (which the operator defines on every host, as for Nova).

Anything else is refused with a message that names the type. Values come from Cinder and go through
ElementTree, which escapes them. The disk's ``<serial>`` is the volume id, which is how a volume is found
again in a domain (and how the guest sees it in /dev/disk/by-id).
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET  # noqa: S405 - builds XML and parses libvirt's own output only
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute_tasks.drivers.base import InvalidRequest
from compute_tasks.rpc import VolumeConnection

SUPPORTED_TYPES = ("nfs", "iscsi", "rbd")
DEFAULT_ISCSI_PORT = 3260
DEFAULT_RBD_PORT = 6789

_DEVICE_RE = re.compile(r"^(?:/dev/)?(vd[a-z]{1,2})$")
# host:/path, the host a name, an IPv4 address or an [IPv6] address. It reaches `mount` as an argument,
# so nothing else is let through: a leading '-' would be read as an option.
_NFS_EXPORT_RE = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):/[^\x00-\x1f\x7f]*$"
)


class UnsupportedVolume(InvalidRequest):
    """The volume's connection cannot become a disk on any host of this cloud."""


@dataclass(frozen=True)
class VolumeDisk:
    """What the driver needs to plug a volume in: the ``<disk>`` XML, and what must exist first."""

    xml: str
    local_path: Path | None = None  # a file volume's path on this host
    nfs_export: str | None = None  # the share that must be mounted for ``local_path`` to exist
    nfs_mount_point: Path | None = None
    iscsi_secret: tuple[str, str, str] | None = None  # (usage name, user, password) of a CHAP secret
    # How qemu-img writes an image onto the volume: a file's path, or the options of QEMU's block driver
    # for a network disk. Never a password: that stays in ``iscsi_secret``.
    qemu_img_target: str | None = None
    qemu_img_target_options: dict[str, str] | None = None


def nested_connection_info(info: dict[str, Any]) -> dict[str, Any]:
    """Cinder's attachments API answers ``connection_info`` flattened (the driver's ``data`` keys beside
    ``driver_volume_type``); hosts take it nested, as the older API and Nova's BDMs have it."""
    if "data" in info and isinstance(info.get("data"), dict):
        return {"driver_volume_type": info.get("driver_volume_type"), "data": dict(info["data"])}
    data = {key: value for key, value in info.items() if key != "driver_volume_type"}
    return {"driver_volume_type": info.get("driver_volume_type"), "data": data}


def guest_device(device: str) -> str:
    """``/dev/vdb`` or ``vdb`` as the target name libvirt takes; anything else is refused."""
    match = _DEVICE_RE.match(device or "")
    if not match:
        raise UnsupportedVolume(f"device name {device!r} is not a virtio disk name such as /dev/vdb")
    return match[1]


def nfs_mount_point(mount_point_base: Path, export: str) -> Path:
    return Path(mount_point_base) / hashlib.md5(export.encode()).hexdigest()  # noqa: S324 - a name, as os-brick's


def iscsi_secret_usage(volume_id: str) -> str:
    return f"cloud-volume-{volume_id}"


def volume_disk(volume: VolumeConnection, *, nfs_mount_point_base: Path, direct_io: bool = True) -> VolumeDisk:
    """The disk of ``volume`` for this host; ``direct_io`` says whether its files may be opened O_DIRECT."""
    info = nested_connection_info(volume.connection_info or {})
    kind = str(info.get("driver_volume_type") or "")
    data = info["data"]
    target = guest_device(volume.device)
    if kind == "nfs":
        return _nfs_disk(volume, data, target, nfs_mount_point_base, direct_io)
    if kind == "iscsi":
        return _iscsi_disk(volume, data, target)
    if kind == "rbd":
        return _rbd_disk(volume, data, target)
    raise UnsupportedVolume(
        f"volume {volume.volume_id} is served as {kind or 'an unknown type'!r}; this host attaches "
        f"{', '.join(SUPPORTED_TYPES)}"
    )


def _finish(disk: ET.Element, volume: VolumeConnection, data: dict[str, Any], target: str) -> str:
    ET.SubElement(disk, "target", dev=target, bus="virtio")
    serial = ET.SubElement(disk, "serial")
    serial.text = volume.volume_id
    if str(data.get("access_mode") or "rw") == "ro":
        ET.SubElement(disk, "readonly")
    return ET.tostring(disk, encoding="unicode")


def _disk_format(data: dict[str, Any]) -> str:
    fmt = str(data.get("format") or "raw")
    if fmt not in ("raw", "qcow2"):
        raise UnsupportedVolume(f"volume format {fmt!r} is not raw or qcow2")
    return fmt


def _nfs_disk(
    volume: VolumeConnection, data: dict[str, Any], target: str, mount_point_base: Path, direct_io: bool
) -> VolumeDisk:
    export, name = data.get("export"), data.get("name")
    if not export or not name or "/" in str(name) or str(name) in (".", ".."):
        raise UnsupportedVolume(f"volume {volume.volume_id}: NFS connection info lacks a usable export and name")
    if not _NFS_EXPORT_RE.match(str(export)):
        raise UnsupportedVolume(f"volume {volume.volume_id}: NFS export {export!r} is not of the form host:/path")
    mount_point = nfs_mount_point(mount_point_base, str(export))
    path = mount_point / str(name)
    disk = ET.Element("disk", type="file", device="disk")
    driver = {"name": "qemu", "type": _disk_format(data)}
    # O_DIRECT keeps the guest's writes out of the host's page cache (so they are on the share when the
    # guest flushes); a file system without it gets writethrough, which flushes every write.
    driver.update({"cache": "none", "io": "native"} if direct_io else {"cache": "writethrough"})
    ET.SubElement(disk, "driver", driver)
    ET.SubElement(disk, "source", file=str(path))
    return VolumeDisk(
        xml=_finish(disk, volume, data, target),
        local_path=path,
        nfs_export=str(export),
        nfs_mount_point=mount_point,
        qemu_img_target=str(path),
    )


def _host_port(portal: str, default_port: int) -> tuple[str, int]:
    portal = portal.strip()
    match = re.match(r"^\[([0-9a-fA-F:.]+)\](?::(\d+))?$", portal) or re.match(r"^([^:\[\]]+)(?::(\d+))?$", portal)
    if not match:
        raise UnsupportedVolume(f"iSCSI portal {portal!r} is not host:port")
    return match[1], int(match[2]) if match[2] else default_port


def _iscsi_disk(volume: VolumeConnection, data: dict[str, Any], target: str) -> VolumeDisk:
    portal, iqn, lun = data.get("target_portal"), data.get("target_iqn"), data.get("target_lun")
    if not portal or not iqn or lun is None:
        raise UnsupportedVolume(f"volume {volume.volume_id}: iSCSI connection info lacks the portal, IQN or LUN")
    host, port = _host_port(str(portal), DEFAULT_ISCSI_PORT)
    disk = ET.Element("disk", type="network", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw", cache="none")
    source = ET.SubElement(disk, "source", protocol="iscsi", name=f"{iqn}/{int(lun)}")
    ET.SubElement(source, "host", name=host, port=str(port))
    secret = None
    auth_method = str(data.get("auth_method") or "").upper()
    if auth_method == "CHAP":
        user, password = data.get("auth_username"), data.get("auth_password")
        if not user or password is None:
            raise UnsupportedVolume(f"volume {volume.volume_id}: CHAP without a user name and password")
        usage = iscsi_secret_usage(volume.volume_id)
        auth = ET.SubElement(disk, "auth", username=str(user))
        ET.SubElement(auth, "secret", type="iscsi", usage=usage)
        secret = (usage, str(user), str(password))
    elif auth_method not in ("", "NONE"):
        raise UnsupportedVolume(f"volume {volume.volume_id}: iSCSI authentication {auth_method!r} is not supported")
    host_part = f"[{host}]" if ":" in host else host
    options = {"driver": "iscsi", "transport": "tcp", "portal": f"{host_part}:{port}", "target": str(iqn)}
    options["lun"] = str(int(lun))
    if secret:
        options["user"] = secret[1]
    return VolumeDisk(xml=_finish(disk, volume, data, target), iscsi_secret=secret, qemu_img_target_options=options)


def _rbd_disk(volume: VolumeConnection, data: dict[str, Any], target: str) -> VolumeDisk:
    name = data.get("name")
    if not name or "/" not in str(name):
        raise UnsupportedVolume(f"volume {volume.volume_id}: RBD connection info lacks a pool/image name")
    disk = ET.Element("disk", type="network", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw", cache="writeback", discard="unmap")
    source = ET.SubElement(disk, "source", protocol="rbd", name=str(name))
    hosts = list(data.get("hosts") or [])
    ports = list(data.get("ports") or [])
    for index, host in enumerate(hosts):
        port = ports[index] if index < len(ports) and ports[index] else DEFAULT_RBD_PORT
        ET.SubElement(source, "host", name=str(host), port=str(port))
    if data.get("auth_enabled"):
        user, secret_uuid = data.get("auth_username"), data.get("secret_uuid")
        if not user or not secret_uuid:
            raise UnsupportedVolume(
                f"volume {volume.volume_id}: Ceph authentication needs a user and the uuid of the host's libvirt "
                "secret (Cinder's rbd_secret_uuid)"
            )
        auth = ET.SubElement(disk, "auth", username=str(user))
        ET.SubElement(auth, "secret", type=str(data.get("secret_type") or "ceph"), uuid=str(secret_uuid))
    return VolumeDisk(xml=_finish(disk, volume, data, target))


# --- reading domains ---------------------------------------------------------------------------------


def find_volume_disk(domain_xml: str, volume_id: str) -> str | None:
    """The ``<disk>`` of the volume in a domain's XML (found by its serial), or None."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    for disk in root.findall("./devices/disk"):
        if (disk.findtext("serial") or "").strip() == volume_id:
            return ET.tostring(disk, encoding="unicode")
    return None


def disk_targets(domain_xml: str) -> list[str]:
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    return [t.get("dev", "") for t in root.findall("./devices/disk/target")]


def secret_usages(domain_xml: str) -> list[str]:
    """The iSCSI secrets this cloud defined for the domain's volumes (to remove with the domain)."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    usages = [s.get("usage", "") for s in root.findall("./devices/disk/auth/secret[@type='iscsi']")]
    return [usage for usage in usages if usage.startswith("cloud-volume-")]


def iscsi_secret_xml(usage: str) -> str:
    secret = ET.Element("secret", ephemeral="no", private="yes")
    description = ET.SubElement(secret, "description")
    description.text = "CHAP password of a Cinder volume"
    usage_el = ET.SubElement(secret, "usage", type="iscsi")
    target = ET.SubElement(usage_el, "target")
    target.text = usage
    return ET.tostring(secret, encoding="unicode")


def disk_format(volume: VolumeConnection) -> str:
    """The format of the volume's data (raw, or qcow2 for an NFS backend that keeps qcow2 files)."""
    return _disk_format(nested_connection_info(volume.connection_info or {})["data"])
