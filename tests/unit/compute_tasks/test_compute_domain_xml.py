import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compute_tasks.drivers.base import INSTANCE_METADATA_NS
from compute_tasks.drivers.domain_xml import QEMU_NS, InvalidDomainSpec, build_domain_xml, disk_paths, vnc_port
from compute_tasks.rpc import BuildRequest, FlavorSpec, ImageSpec, NicSpec

pytestmark = pytest.mark.unit

HOSTILE = "<script>&\"'"
NS = {"cloud": INSTANCE_METADATA_NS, "qemu": QEMU_NS}


def make_request(**overrides):
    fields = {
        "instance_uuid": str(uuid.uuid4()),
        "domain_name": "instance-1",
        "flavor": FlavorSpec(name="m1.small", vcpus=2, memory_mb=512, root_gb=4),
        "image": ImageSpec(id="cirros", url="http://images/cirros?sig=x", sha256="0" * 64, size=10),
        "nics": [NicSpec(mac="52:54:00:12:34:56", network="user")],
        "request_id": "req-1",
    }
    fields.update(overrides)
    return BuildRequest(**fields)


def render(request, **overrides):
    kwargs = {
        "virt_type": "qemu",
        "disk_path": Path("/state/instances/x/disk"),
        "console_log_path": Path("/state/instances/x/console.log"),
        "vnc_listen": "127.0.0.1",
    }
    kwargs.update(overrides)
    return build_domain_xml(request, **kwargs)


def parse(text):
    return ET.fromstring(text)  # noqa: S314 - XML this test just built


def test_the_domain_carries_the_request():
    request = make_request()
    root = parse(render(request))

    assert root.tag == "domain"
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "instance-1"
    assert root.findtext("uuid") == request.instance_uuid
    assert root.find("memory").get("unit") == "MiB"
    assert root.findtext("memory") == "512"
    assert root.findtext("vcpu") == "2"
    os_type = root.find("os/type")
    assert (os_type.text, os_type.get("machine")) == ("hvm", "pc")
    assert root.find("features/acpi") is not None
    assert root.findtext("on_poweroff") == "destroy"
    assert root.findtext("on_reboot") == "restart"


def test_metadata_marks_the_domain_as_the_clouds():
    request = make_request()
    root = parse(render(request))

    instance = root.find("metadata/cloud:instance", NS)
    assert instance is not None
    assert instance.findtext("cloud:uuid", namespaces=NS) == request.instance_uuid
    assert instance.find("cloud:flavor", NS).get("name") == "m1.small"
    assert instance.find("cloud:image", NS).get("id") == "cirros"


def test_the_disk_is_the_virtio_qcow2_overlay():
    root = parse(render(make_request()))

    (disk,) = root.findall("devices/disk")
    assert disk.get("device") == "disk"
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("source").get("file") == "/state/instances/x/disk"
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}


def qemu_args(root):
    return [arg.get("value") for arg in root.findall("qemu:commandline/qemu:arg", NS)]


def test_nics_use_user_mode_or_a_libvirt_network():
    nics = [
        NicSpec(mac="52:54:00:00:00:01", network="user"),
        NicSpec(mac="52:54:00:00:00:02", network="private"),
    ]
    root = parse(render(make_request(nics=nics)))

    (network,) = root.findall("devices/interface")
    assert network.get("type") == "network"
    assert network.find("source").get("network") == "private"
    assert network.find("mac").get("address") == "52:54:00:00:00:02"
    assert network.find("model").get("type") == "virtio"
    assert qemu_args(root) == [
        "-netdev",
        "user,id=cloud-user0,restrict=on",
        "-device",
        "virtio-net-pci,netdev=cloud-user0,mac=52:54:00:00:00:01,bus=pci.0,addr=0x1f",
    ]


def test_a_user_mode_nic_is_walled_off_from_the_host():
    # libvirt's <interface type='user'> cannot say restrict=on: from inside the guest, 10.0.2.2 would be
    # the host's loopback (the broker, the API, other guests' VNC servers).
    nics = [NicSpec(mac=f"52:54:00:00:00:0{i}", network="user") for i in range(1, 4)]
    root = parse(render(make_request(nics=nics)))

    assert root.find("devices/interface") is None
    args = qemu_args(root)
    netdevs = [args[i + 1] for i, arg in enumerate(args) if arg == "-netdev"]
    devices = [args[i + 1] for i, arg in enumerate(args) if arg == "-device"]
    assert len(netdevs) == len(devices) == 3
    for netdev in netdevs:
        options = netdev.split(",")
        assert options[0] == "user" and "restrict=on" in options[1:]
    # Each NIC on its own slot at the top of the root bus, where libvirt's own devices do not go.
    assert [device.rsplit(",addr=", 1)[1] for device in devices] == ["0x1f", "0x1e", "0x1d"]


def test_the_qemu_namespace_is_declared_on_the_domain():
    text = render(make_request())
    assert text.startswith("<domain ") and 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"' in text
    assert parse(render(make_request(nics=[]))).find("qemu:commandline", NS) is None


def test_more_user_mode_nics_than_reserved_slots_are_refused():
    nics = [NicSpec(mac=f"52:54:00:00:00:0{i}", network="user") for i in range(5)]
    with pytest.raises(InvalidDomainSpec, match="user-mode NICs"):
        render(make_request(nics=nics))


def test_the_serial_port_is_logged_to_the_instance_dir():
    root = parse(render(make_request()))

    serial = root.find("devices/serial")
    assert serial.get("type") == "pty"
    assert serial.find("log").attrib == {"file": "/state/instances/x/console.log", "append": "off"}
    console = root.find("devices/console")
    assert console.get("type") == "pty"
    assert console.find("target").get("type") == "serial"


def test_vnc_graphics_and_vga():
    root = parse(render(make_request(), vnc_listen="192.0.2.10"))

    graphics = root.find("devices/graphics")
    assert graphics.get("type") == "vnc"
    assert graphics.get("autoport") == "yes"
    assert graphics.get("listen") == "192.0.2.10"
    assert graphics.find("listen").get("address") == "192.0.2.10"
    assert root.find("devices/video/model").get("type") == "vga"


def test_kvm_passes_the_host_cpu_model():
    assert parse(render(make_request(), virt_type="kvm")).find("cpu").get("mode") == "host-model"
    assert parse(render(make_request())).find("cpu") is None


def test_hostile_names_stay_text():
    request = make_request(
        domain_name=HOSTILE,
        flavor=FlavorSpec(name=HOSTILE, vcpus=1, memory_mb=64, root_gb=1),
        nics=[NicSpec(mac="52:54:00:12:34:56", network="net" + HOSTILE)],
    )
    text = render(request)

    assert "<script>" not in text
    root = parse(text)
    assert root.findtext("name") == HOSTILE
    assert root.find("metadata/cloud:instance/cloud:flavor", NS).get("name") == HOSTILE
    assert root.find("devices/interface/source").get("network") == "net" + HOSTILE
    # Nothing was injected: still exactly one of each element the name could have forged.
    assert len(root.findall("name")) == 1
    assert len(root.findall("devices/interface")) == 1


@pytest.mark.parametrize("name", ["", "   ", "a/b", "a\nb", "tab\there"])
def test_names_libvirt_refuses_are_refused_clearly(name):
    with pytest.raises(InvalidDomainSpec, match="domain name") as caught:
        render(make_request(domain_name=name))
    assert caught.value.reschedulable is False


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"nics": [NicSpec(mac="52:54:00:zz:00:01", network="user")]}, "MAC"),
        ({"nics": [NicSpec(mac="52:54:00:00:00:01'/><x", network="user")]}, "MAC"),
        ({"nics": [NicSpec(mac="52:54:00:00:00:01", network="a/b")]}, "network"),
        ({"flavor": FlavorSpec(name="zero", vcpus=0, memory_mb=64, root_gb=1)}, "vCPUs"),
    ],
)
def test_invalid_requests_are_refused(overrides, match):
    with pytest.raises(InvalidDomainSpec, match=match):
        render(make_request(**overrides))


def test_unknown_virt_type_is_refused():
    with pytest.raises(InvalidDomainSpec, match="virt type"):
        render(make_request(), virt_type="xen")


def test_vnc_port_is_read_from_live_xml():
    live = (
        "<domain><devices><disk type='file'><source file='/d'/></disk>"
        "<graphics type='vnc' port='5901' autoport='yes'/></devices></domain>"
    )
    assert vnc_port(live) == 5901
    assert vnc_port("<domain><devices><graphics type='vnc' port='-1'/></devices></domain>") is None
    assert vnc_port("<domain><devices><graphics type='vnc'/></devices></domain>") is None
    assert vnc_port("<domain><devices/></domain>") is None
    assert disk_paths(live) == ["/d"]
