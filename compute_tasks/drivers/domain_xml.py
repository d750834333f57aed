"""The libvirt domain XML of an instance, built from its BuildRequest, and readers for live domain XML.

Everything that comes from a request goes through ElementTree, which escapes it: names, network names
and MAC addresses can contain anything a user typed. The values libvirt would reject with an obscure
message (a '/' in a name, a malformed MAC) are refused here with a clear one.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET  # noqa: S405 - builds XML and parses libvirt's own output only
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from compute_tasks.drivers.base import INSTANCE_METADATA_NS, INSTANCE_METADATA_PREFIX, InvalidRequest
from compute_tasks.rpc import BuildRequest, NicSpec

ET.register_namespace(INSTANCE_METADATA_PREFIX, INSTANCE_METADATA_NS)

VIRT_TYPES = ("qemu", "kvm")
MACHINE_TYPE = "pc"
CONFIG_DRIVE_DEVICE = "hdd"  # the secondary IDE slave: no volume (virtio, vdX) ever takes it

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


class InvalidDomainSpec(InvalidRequest):
    """The request cannot become a domain on any host."""


def build_domain_xml(
    request: BuildRequest,
    *,
    virt_type: str,
    disk_path: Path | None,
    console_log_path: Path,
    vnc_listen: str,
    disk_format: str = "qcow2",
    volume_disks: Sequence[str] = (),
    config_drive_path: Path | None = None,
) -> str:
    """The domain of ``request``: its root disk is the overlay at ``disk_path``, or, when that is None,
    the first of ``volume_disks`` (the ``<disk>`` elements of its Cinder volumes, root volume first).
    A config drive, if any, is a read-only CD-ROM on the IDE bus, where every guest finds it."""
    if virt_type not in VIRT_TYPES:
        raise InvalidDomainSpec(f"virt type {virt_type!r} is not one of {', '.join(VIRT_TYPES)}")
    flavor = request.flavor
    if flavor.vcpus < 1 or flavor.memory_mb < 1:
        raise InvalidDomainSpec(
            f"flavor {flavor.name!r} asks for {flavor.vcpus} vCPUs and {flavor.memory_mb} MiB: both must be more than 0"
        )
    _check_domain_name(request.domain_name)

    domain = ET.Element("domain", type=virt_type)
    _text(domain, "name", request.domain_name)
    _text(domain, "uuid", request.instance_uuid)
    domain.append(_metadata(request))
    _text(domain, "memory", str(flavor.memory_mb), unit="MiB")
    _text(domain, "currentMemory", str(flavor.memory_mb), unit="MiB")
    _text(domain, "vcpu", str(flavor.vcpus))

    os_el = ET.SubElement(domain, "os")
    _text(os_el, "type", "hvm", machine=MACHINE_TYPE)
    ET.SubElement(os_el, "boot", dev="hd")

    # ACPI is what lets a graceful shutdown or soft reboot reach the guest.
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    if virt_type == "kvm":
        ET.SubElement(domain, "cpu", mode="host-model")
    ET.SubElement(domain, "clock", offset="utc")
    _text(domain, "on_poweroff", "destroy")
    _text(domain, "on_reboot", "restart")
    _text(domain, "on_crash", "destroy")

    devices = ET.SubElement(domain, "devices")
    if disk_path is not None:
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type=disk_format)
        ET.SubElement(disk, "source", file=str(disk_path))
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
    elif not volume_disks:
        raise InvalidDomainSpec(f"instance {request.instance_uuid} has neither a root disk nor a root volume")
    for volume_disk in volume_disks:
        devices.append(ET.fromstring(volume_disk))  # noqa: S314 - built by volume_xml
    if config_drive_path is not None:
        cdrom = ET.SubElement(devices, "disk", type="file", device="cdrom")
        ET.SubElement(cdrom, "driver", name="qemu", type="raw")
        ET.SubElement(cdrom, "source", file=str(config_drive_path))
        ET.SubElement(cdrom, "target", dev=CONFIG_DRIVE_DEVICE, bus="ide")
        ET.SubElement(cdrom, "readonly")

    for nic in request.nics:
        devices.append(_interface(nic))

    # A pty serial port keeps `virsh console` working, and its log keeps everything the guest printed.
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "log", file=str(console_log_path), append="off")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")

    # An absolute pointer keeps the browser console's mouse where the guest thinks it is.
    ET.SubElement(devices, "input", type="tablet", bus="usb")
    graphics = ET.SubElement(devices, "graphics", type="vnc", port="-1", autoport="yes", listen=vnc_listen)
    ET.SubElement(graphics, "listen", type="address", address=vnc_listen)
    video = ET.SubElement(devices, "video")
    ET.SubElement(video, "model", type="vga")

    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")


def vnc_port(domain_xml: str) -> int | None:
    """The VNC port of a running domain from its live XML; None if it has no VNC server or no port yet."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    graphics = root.find("./devices/graphics[@type='vnc']")
    if graphics is None:
        return None
    try:
        port = int(graphics.get("port", "-1"))
    except ValueError:
        return None
    return port if port > 0 else None


def serial_log_path(domain_xml: str) -> str | None:
    """Where the domain's first serial port logs what the guest writes, if it logs at all."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    log = root.find("./devices/serial/log")
    return log.get("file") if log is not None and log.get("file") else None


def disk_paths(domain_xml: str) -> list[str]:
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    return [
        source.get("file", "") for source in root.findall("./devices/disk[@type='file']/source") if source.get("file")
    ]


def _metadata(request: BuildRequest) -> ET.Element:
    metadata = ET.Element("metadata")
    instance = ET.SubElement(metadata, _ns("instance"))
    _text(instance, _ns("uuid"), request.instance_uuid)
    flavor = request.flavor
    ET.SubElement(
        instance,
        _ns("flavor"),
        name=flavor.name,
        vcpus=str(flavor.vcpus),
        memory_mb=str(flavor.memory_mb),
        root_gb=str(flavor.root_gb),
    )
    if request.image is not None:
        ET.SubElement(instance, _ns("image"), id=request.image.id)
    _text(instance, _ns("request_id"), request.request_id)
    _text(instance, _ns("created_at"), datetime.now(UTC).isoformat(timespec="seconds"))
    return metadata


def _interface(nic: NicSpec) -> ET.Element:
    if not _MAC_RE.match(nic.mac or ""):
        raise InvalidDomainSpec(f"NIC MAC address {nic.mac!r} is not of the form 52:54:00:xx:xx:xx")
    if nic.network == "user":
        interface = ET.Element("interface", type="user")
    else:
        if not nic.network or "/" in nic.network or _has_control_chars(nic.network):
            raise InvalidDomainSpec(f"NIC network name {nic.network!r} is not a valid libvirt network name")
        interface = ET.Element("interface", type="network")
        ET.SubElement(interface, "source", network=nic.network)
    ET.SubElement(interface, "mac", address=nic.mac.lower())
    ET.SubElement(interface, "model", type="virtio")
    return interface


def _check_domain_name(name: str) -> None:
    # libvirt refuses these itself, with messages that do not say which instance was at fault.
    if not name or not name.strip():
        raise InvalidDomainSpec("the domain name is empty")
    if "/" in name or _has_control_chars(name):
        raise InvalidDomainSpec(f"domain name {name!r} contains '/' or a control character")


def _has_control_chars(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def _ns(tag: str) -> str:
    return f"{{{INSTANCE_METADATA_NS}}}{tag}"


def _text(parent: ET.Element, tag: str, text: str, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    element.text = text
    return element
