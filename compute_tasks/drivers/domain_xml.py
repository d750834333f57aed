"""The libvirt domain XML of an instance, built from its BuildRequest, and readers for live domain XML.

Everything that comes from a request goes through ElementTree, which escapes it: names, network names
and MAC addresses can contain anything a user typed. The values libvirt would reject with an obscure
message (a '/' in a name, a malformed MAC) are refused here with a clear one.

A NIC on QEMU's user-mode network is walled off from the host (``restrict=on``); see ``_user_nics`` and
docs/security-guests.md.
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
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)

VIRT_TYPES = ("qemu", "kvm")
MACHINE_TYPE = "pc"
CONFIG_DRIVE_DEVICE = "hdd"  # the secondary IDE slave: no volume (virtio, vdX) ever takes it

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")

# The PCI slots of user-mode NICs on the root bus, from the top down. libvirt does not know these devices
# (they are on QEMU's command line), and it gives its own devices, hot-plugged volumes included, the
# lowest free slot: a domain would need some 25 other PCI devices before it reached these.
USER_NIC_PCI_SLOTS = (0x1F, 0x1E, 0x1D, 0x1C)


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

    user_nics = []
    for nic in request.nics:
        _check_mac(nic)
        if nic.network == "user":
            user_nics.append(nic)
        elif nic.network == PORT_NETWORK:
            devices.append(_port_interface(nic))
        else:
            devices.append(_network_interface(nic))

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

    if user_nics:
        domain.append(_user_nics(user_nics))

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


def _check_mac(nic: NicSpec) -> None:
    if not _MAC_RE.match(nic.mac or ""):
        raise InvalidDomainSpec(f"NIC MAC address {nic.mac!r} is not of the form 52:54:00:xx:xx:xx")


PORT_NETWORK = "port"
# The host-side device of a port: Neutron's ``tap`` + 11 characters of the port id, a Linux interface name.
_TAP_RE = re.compile(r"^tap[0-9a-f-]{1,12}$")


def _port_interface(nic: NicSpec) -> ET.Element:
    """A NIC on a port of the cloud's network controller: libvirt makes the tap ``device`` (a managed
    ``type='ethernet'`` interface, attached to nothing), and the host's data plane puts it on the
    network's bridge once it exists. So the guest is on no network until the data plane has plugged it."""
    if not _TAP_RE.match(nic.device or ""):
        raise InvalidDomainSpec(f"NIC device {nic.device!r} is not a port's tap device name (tap + port id)")
    interface = ET.Element("interface", type="ethernet")
    ET.SubElement(interface, "mac", address=nic.mac.lower())
    ET.SubElement(interface, "target", dev=nic.device)
    ET.SubElement(interface, "model", type="virtio")
    if nic.mtu:
        if not 68 <= int(nic.mtu) <= 65535:
            raise InvalidDomainSpec(f"NIC MTU {nic.mtu!r} is out of range")
        ET.SubElement(interface, "mtu", size=str(int(nic.mtu)))
    return interface


def port_interface_xml(nic: NicSpec) -> str:
    """The ``<interface>`` of a port's NIC alone, to hot-plug it into a domain."""
    if not _MAC_RE.match(nic.mac or ""):
        raise InvalidDomainSpec(f"NIC MAC address {nic.mac!r} is not a MAC address")
    return ET.tostring(_port_interface(nic), encoding="unicode")


def interface_xml_by_mac(domain_xml: str, mac: str) -> str | None:
    """The domain's ``<interface>`` with this MAC, as libvirt wrote it (to unplug it), or None."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    for interface in root.findall("./devices/interface"):
        found = interface.find("mac")
        if found is not None and found.get("address", "").lower() == mac.lower():
            return ET.tostring(interface, encoding="unicode")
    return None


def port_nics(domain_xml: str) -> list[tuple[str, str]]:
    """(MAC, tap device) of the domain's port NICs."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    nics = []
    for interface in root.findall("./devices/interface[@type='ethernet']"):
        mac, target = interface.find("mac"), interface.find("target")
        if mac is not None and target is not None:
            nics.append((mac.get("address", ""), target.get("dev", "")))
    return nics


def _network_interface(nic: NicSpec) -> ET.Element:
    if not nic.network or "/" in nic.network or _has_control_chars(nic.network):
        raise InvalidDomainSpec(f"NIC network name {nic.network!r} is not a valid libvirt network name")
    interface = ET.Element("interface", type="network")
    ET.SubElement(interface, "source", network=nic.network)
    ET.SubElement(interface, "mac", address=nic.mac.lower())
    ET.SubElement(interface, "model", type="virtio")
    return interface


def _user_nics(nics: Sequence[NicSpec]) -> ET.Element:
    """The user-mode NICs, as arguments on QEMU's command line.

    From inside a guest on QEMU's user-mode network, 10.0.2.2 is the host's 127.0.0.1: the broker, the
    API, every other guest's VNC server. With ``restrict=on`` the guest reaches nothing on the host or
    beyond it, and QEMU's own DHCP server still gives it its address. libvirt's ``<interface type='user'>``
    has no way to say so (libvirt 9), hence the command-line passthrough; the price is a domain libvirt
    calls "tainted: custom-argv", with a NIC it does not list.
    """
    if len(nics) > len(USER_NIC_PCI_SLOTS):
        raise InvalidDomainSpec(f"{len(nics)} user-mode NICs asked for; at most {len(USER_NIC_PCI_SLOTS)}")
    commandline = ET.Element(_qemu("commandline"))
    for index, (nic, slot) in enumerate(zip(nics, USER_NIC_PCI_SLOTS, strict=False)):
        netdev = f"cloud-user{index}"
        # The MAC was checked against _MAC_RE, so it cannot smuggle a ',' option into QEMU's syntax.
        for arg in (
            "-netdev",
            f"user,id={netdev},restrict=on",
            "-device",
            f"virtio-net-pci,netdev={netdev},mac={nic.mac.lower()},bus=pci.0,addr={slot:#x}",
        ):
            ET.SubElement(commandline, _qemu("arg"), value=arg)
    return commandline


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


def _qemu(tag: str) -> str:
    return f"{{{QEMU_NS}}}{tag}"


def _text(parent: ET.Element, tag: str, text: str, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    element.text = text
    return element


RESCUE_DISK_DEVICE = "vda"
RESCUED_DISK_DEVICE = "vdb"


def rescue_domain_xml(domain_xml: str, *, own_disk: Path, rescue_disk: Path) -> str:
    """The definition ``domain_xml`` (an inactive one) booting from ``rescue_disk`` (an overlay, ``vda``)
    with its own root disk ``own_disk`` as ``vdb``.

    Both disks are bootable, so the rescue disk is named first with ``<boot order='1'/>`` (which excludes
    the ``<os><boot dev>`` form). The config drive stays; the Cinder volumes are left out, as in Nova's
    rescue, so that no device name is taken twice.
    """
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    os_el = root.find("os")
    if os_el is not None:
        for boot in os_el.findall("boot"):
            os_el.remove(boot)
    devices = root.find("devices")
    if devices is None:
        raise InvalidDomainSpec("the domain has no devices")
    found = False
    for disk in list(devices.findall("disk")):
        source = disk.find("source")
        path = source.get("file") if source is not None else None
        for boot in disk.findall("boot"):
            disk.remove(boot)
        if disk.get("device") == "cdrom":
            continue
        if path == str(own_disk):
            found = True
            target = disk.find("target")
            if target is None:
                target = ET.SubElement(disk, "target")
            target.set("dev", RESCUED_DISK_DEVICE)
            target.set("bus", "virtio")
            address = disk.find("address")
            if address is not None:
                disk.remove(address)
        else:
            devices.remove(disk)
    if not found:
        raise InvalidDomainSpec(f"the domain has no disk {own_disk} to rescue")
    for element in devices:
        for boot in element.findall("boot"):
            element.remove(boot)
    rescue = ET.Element("disk", type="file", device="disk")
    ET.SubElement(rescue, "driver", name="qemu", type="qcow2")
    ET.SubElement(rescue, "source", file=str(rescue_disk))
    ET.SubElement(rescue, "target", dev=RESCUE_DISK_DEVICE, bus="virtio")
    ET.SubElement(rescue, "boot", order="1")
    devices.insert(0, rescue)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def is_rescue_of(domain_xml: str, rescue_disk: Path) -> bool:
    return str(rescue_disk) in disk_paths(domain_xml)


def user_nic_macs(domain_xml: str) -> list[str]:
    """The MACs of the user-mode NICs ``_user_nics`` put on QEMU's command line, in order."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    macs = []
    for arg in root.findall(f"./{_qemu('commandline')}/{_qemu('arg')}"):
        value = arg.get("value", "")
        if value.startswith("virtio-net-pci,") and "netdev=cloud-user" in value:
            macs += [part[len("mac=") :] for part in value.split(",") if part.startswith("mac=")]
    return macs


def network_nics(domain_xml: str) -> list[tuple[str, str]]:
    """(MAC, network) of the domain's libvirt-network NICs."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    nics = []
    for interface in root.findall("./devices/interface[@type='network']"):
        mac, source = interface.find("mac"), interface.find("source")
        if mac is not None and source is not None:
            nics.append((mac.get("address", ""), source.get("network", "")))
    return nics


def disk_targets(domain_xml: str) -> list[str]:
    """The guest device names (``vda``, ``hdd``, ...) of the domain's disks and CD-ROMs, in order."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    return [t.get("dev", "") for t in root.findall("./devices/disk/target") if t.get("dev")]


def nic_devices(domain_xml: str) -> list[tuple[str, str | None]]:
    """(MAC, host-side device such as ``vnet3``) of every NIC: libvirt's interfaces (their device when
    libvirt named one: a running guest's) and then the user-mode NICs, which have no host device."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    nics: list[tuple[str, str | None]] = []
    for interface in root.findall("./devices/interface"):
        mac, target = interface.find("mac"), interface.find("target")
        dev = target.get("dev") if target is not None else None
        nics.append((mac.get("address", "") if mac is not None else "", dev or None))
    return nics + [(mac, None) for mac in user_nic_macs(domain_xml)]


def live_migration_xml(domain_xml: str, *, source_dir: Path, dest_dir: Path, vnc_listen: str | None) -> str:
    """The definition ``domain_xml`` (the live one, as libvirt gives it for migration) as it is to be on the
    destination: every file below ``source_dir`` moved below ``dest_dir`` (a disk's backing chain is the
    destination's own, so it is left for QEMU to read from the overlay), the VNC server listening on
    ``vnc_listen``. When the directories are one (shared), the serial log is appended to, not truncated."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    prefix = str(source_dir).rstrip("/") + "/"
    moved = str(source_dir) != str(dest_dir)
    for element in root.iter():
        path = element.get("file")
        if moved and path and path.startswith(prefix):
            element.set("file", str(dest_dir).rstrip("/") + "/" + path[len(prefix) :])
    devices = root.find("devices")
    if devices is not None:
        if moved:
            for disk in devices.findall("disk"):
                source = disk.find("source")
                if source is not None and (source.get("file") or "").startswith(str(dest_dir)):
                    for backing in disk.findall("backingStore"):
                        disk.remove(backing)
        else:
            for log in devices.findall("./serial/log"):
                log.set("append", "on")
        if vnc_listen:
            for graphics in devices.findall("graphics[@type='vnc']"):
                graphics.set("listen", vnc_listen)
                for listen in graphics.findall("listen"):
                    if listen.get("type") == "address":
                        listen.set("address", vnc_listen)
    return ET.tostring(root, encoding="unicode")


def local_disk_targets(domain_xml: str, directory: Path) -> list[str]:
    """The target devices of the writable disks whose files are below ``directory``: what a block migration
    copies (volumes are on shared storage, the read-only config drive is made again on the destination)."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own output
    prefix = str(directory).rstrip("/") + "/"
    targets = []
    for disk in root.findall("./devices/disk"):
        source, target = disk.find("source"), disk.find("target")
        if source is None or target is None or disk.find("readonly") is not None:
            continue
        if (source.get("file") or "").startswith(prefix) and target.get("dev"):
            targets.append(target.get("dev", ""))
    return targets
