import hashlib
import xml.etree.ElementTree as ET  # noqa: S405 - parses XML built here

import pytest

from compute_tasks.drivers import domain_xml, volume_xml
from compute_tasks.drivers.volume_xml import UnsupportedVolume
from compute_tasks.rpc import BuildRequest, FlavorSpec, VolumeConnection

pytestmark = pytest.mark.unit

VOLUME_ID = "5d081849-595c-4d1d-aa6a-3042681e99eb"


def volume(info, device="/dev/vdb", **kw):
    return VolumeConnection(volume_id=VOLUME_ID, attachment_id="a1", device=device, connection_info=info, **kw)


def disk(xml):
    return ET.fromstring(xml)  # noqa: S314


# The attachments API's flat answer for the NFS driver, as Cinder 29 gives it.
NFS_FLAT = {
    "driver_volume_type": "nfs",
    "export": "127.0.0.1:/srv/nfsexport",
    "name": f"volume-{VOLUME_ID}",
    "format": "raw",
    "options": None,
    "mount_point_base": "/var/lib/cinder/mnt",
    "access_mode": "rw",
    "encrypted": False,
    "attachment_id": "a1",
}


def test_an_nfs_volume_is_a_file_on_the_share_mounted_where_os_brick_would():
    made = volume_xml.volume_disk(volume(NFS_FLAT), nfs_mount_point_base="/mnt/nfs")
    element = disk(made.xml)
    digest = hashlib.md5(b"127.0.0.1:/srv/nfsexport").hexdigest()  # noqa: S324
    assert element.get("type") == "file"
    assert element.find("source").get("file") == f"/mnt/nfs/{digest}/volume-{VOLUME_ID}"
    assert element.find("driver").attrib == {"name": "qemu", "type": "raw", "cache": "none", "io": "native"}
    assert element.find("target").attrib == {"dev": "vdb", "bus": "virtio"}
    assert element.findtext("serial") == VOLUME_ID
    assert element.find("readonly") is None
    assert str(made.local_path) == f"/mnt/nfs/{digest}/volume-{VOLUME_ID}"
    assert made.nfs_export == "127.0.0.1:/srv/nfsexport"


def test_without_direct_io_and_read_only_the_nfs_disk_says_so():
    made = volume_xml.volume_disk(volume({**NFS_FLAT, "access_mode": "ro"}), nfs_mount_point_base="/m", direct_io=False)
    element = disk(made.xml)
    assert element.find("driver").get("cache") == "writethrough" and element.find("driver").get("io") is None
    assert element.find("readonly") is not None


def test_nested_and_flat_connection_info_are_the_same_disk():
    flat = volume_xml.volume_disk(volume(NFS_FLAT), nfs_mount_point_base="/m").xml
    nested = volume_xml.volume_disk(volume(volume_xml.nested_connection_info(NFS_FLAT)), nfs_mount_point_base="/m").xml
    assert flat == nested


def test_an_iscsi_volume_is_a_network_disk_with_a_chap_secret():
    info = {
        "driver_volume_type": "iscsi",
        "data": {
            "target_portal": "192.0.2.10:3260",
            "target_iqn": "iqn.2010-10.org.openstack:volume-x",
            "target_lun": 1,
            "auth_method": "CHAP",
            "auth_username": "u",
            "auth_password": "p&<w",
        },
    }
    made = volume_xml.volume_disk(volume(info, device="vdc"), nfs_mount_point_base="/m")
    element = disk(made.xml)
    assert element.get("type") == "network"
    source = element.find("source")
    assert source.attrib == {"protocol": "iscsi", "name": "iqn.2010-10.org.openstack:volume-x/1"}
    assert source.find("host").attrib == {"name": "192.0.2.10", "port": "3260"}
    assert element.find("auth").get("username") == "u"
    assert element.find("auth/secret").attrib == {"type": "iscsi", "usage": f"cloud-volume-{VOLUME_ID}"}
    assert "p&<w" not in made.xml  # the password lives in the libvirt secret only
    assert made.iscsi_secret == (f"cloud-volume-{VOLUME_ID}", "u", "p&<w")
    # qemu-img gets the password as a secret object, never among the target's options (its argv).
    assert made.qemu_img_target_options["user"] == "u"
    assert "p&<w" not in repr(made.qemu_img_target_options) and made.qemu_img_target is None
    assert element.find("target").get("dev") == "vdc"
    assert volume_xml.secret_usages(f"<domain><devices>{made.xml}</devices></domain>") == [f"cloud-volume-{VOLUME_ID}"]


def test_an_ipv6_portal_and_no_authentication():
    info = {
        "driver_volume_type": "iscsi",
        "target_portal": "[2001:db8::1]:3261",
        "target_iqn": "iqn.x",
        "target_lun": 0,
    }
    made = volume_xml.volume_disk(volume(info), nfs_mount_point_base="/m")
    assert disk(made.xml).find("source/host").attrib == {"name": "2001:db8::1", "port": "3261"}
    assert disk(made.xml).find("auth") is None
    assert made.qemu_img_target is None
    assert made.qemu_img_target_options == {
        "driver": "iscsi",
        "transport": "tcp",
        "portal": "[2001:db8::1]:3261",
        "target": "iqn.x",
        "lun": "0",
    }


def test_an_rbd_volume_names_its_monitors_and_the_hosts_ceph_secret():
    info = {
        "driver_volume_type": "rbd",
        "data": {
            "name": "volumes/volume-x",
            "hosts": ["192.0.2.1", "192.0.2.2"],
            "ports": ["6789", "3300"],
            "auth_enabled": True,
            "auth_username": "cinder",
            "secret_type": "ceph",
            "secret_uuid": "2a5b08e4-3dca-4ff9-9a1d-40389758d081",
        },
    }
    element = disk(volume_xml.volume_disk(volume(info), nfs_mount_point_base="/m").xml)
    assert element.find("source").attrib == {"protocol": "rbd", "name": "volumes/volume-x"}
    assert [h.attrib for h in element.findall("source/host")] == [
        {"name": "192.0.2.1", "port": "6789"},
        {"name": "192.0.2.2", "port": "3300"},
    ]
    assert element.find("auth/secret").attrib == {"type": "ceph", "uuid": "2a5b08e4-3dca-4ff9-9a1d-40389758d081"}


@pytest.mark.parametrize(
    "info, message",
    [
        ({"driver_volume_type": "fibre_channel", "data": {}}, "fibre_channel"),
        ({"driver_volume_type": "nfs", "export": "h:/x", "name": "../etc"}, "export and name"),
        ({"driver_volume_type": "iscsi", "target_iqn": "iqn.x", "target_lun": 0}, "portal"),
        ({"driver_volume_type": "rbd", "name": "noslash"}, "pool/image"),
        ({"driver_volume_type": "rbd", "name": "p/i", "auth_enabled": True}, "libvirt secret"),
        ({**NFS_FLAT, "format": "vmdk"}, "vmdk"),
    ],
)
def test_what_cannot_become_a_disk_is_refused_with_a_reason(info, message):
    with pytest.raises(UnsupportedVolume, match=message):
        volume_xml.volume_disk(volume(info), nfs_mount_point_base="/m")


@pytest.mark.parametrize(
    "export",
    [
        "-oremount,rw:/x",  # an option, had it reached mount as the first argument
        "--bind",
        "-o",
        "host:relative/path",
        "host",
        ":/srv/x",
        "host:/srv/x\nother",
        "[zz]:/x",
        "host name:/x",
    ],
)
def test_an_nfs_export_that_is_not_host_colon_path_is_refused(export):
    with pytest.raises(UnsupportedVolume, match="host:/path"):
        volume_xml.volume_disk(volume({**NFS_FLAT, "export": export}), nfs_mount_point_base="/m")


@pytest.mark.parametrize("export", ["127.0.0.1:/srv/nfsexport", "[2001:db8::1]:/x", "nfs-1.example.org:/a b", "h:/"])
def test_nfs_exports_of_every_usual_shape_are_taken(export):
    made = volume_xml.volume_disk(volume({**NFS_FLAT, "export": export}), nfs_mount_point_base="/m")
    assert made.nfs_export == export


@pytest.mark.parametrize("device", ["/dev/sda", "vd", "/dev/vdb1", "", "../vdb"])
def test_only_virtio_disk_names(device):
    with pytest.raises(UnsupportedVolume):
        volume_xml.volume_disk(volume(NFS_FLAT, device=device), nfs_mount_point_base="/m")


def test_a_volume_is_found_in_a_domain_by_its_serial():
    made = volume_xml.volume_disk(volume(NFS_FLAT), nfs_mount_point_base="/m").xml
    domain = f"<domain><devices><disk type='file'><target dev='vda'/></disk>{made}</devices></domain>"
    assert volume_xml.find_volume_disk(domain, VOLUME_ID) is not None
    assert volume_xml.find_volume_disk(domain, "other") is None
    assert volume_xml.disk_targets(domain) == ["vda", "vdb"]


def test_a_domain_booting_from_a_volume_has_no_local_disk(tmp_path):
    request = BuildRequest(
        instance_uuid="8c1a3b2e-0d4f-4e5a-9b6c-7d8e9f0a1b2c",
        domain_name="instance-8c1a3b2e-0d4f-4e5a-9b6c-7d8e9f0a1b2c",
        flavor=FlavorSpec(name="m1", vcpus=1, memory_mb=256, root_gb=1),
        image=None,
    )
    root = volume_xml.volume_disk(volume(NFS_FLAT, device="/dev/vda", boot_index=0), nfs_mount_point_base="/m").xml
    xml = domain_xml.build_domain_xml(
        request,
        virt_type="qemu",
        disk_path=None,
        console_log_path=tmp_path / "console.log",
        vnc_listen="127.0.0.1",
        volume_disks=[root],
    )
    element = ET.fromstring(xml)  # noqa: S314
    disks = element.findall("./devices/disk")
    assert len(disks) == 1 and disks[0].findtext("serial") == VOLUME_ID
    assert disks[0].find("target").get("dev") == "vda"
    with pytest.raises(domain_xml.InvalidDomainSpec, match="neither a root disk nor a root volume"):
        domain_xml.build_domain_xml(
            request, virt_type="qemu", disk_path=None, console_log_path=tmp_path / "c", vnc_listen="127.0.0.1"
        )
