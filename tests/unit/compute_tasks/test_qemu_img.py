"""qemu-img on the host: images that name other host files are refused, ``info`` runs under limits, and a
CHAP password never appears on qemu-img's command line."""

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from compute_tasks.drivers.base import DriverError
from compute_tasks.drivers.qemu_img import (
    INFO_ADDRESS_SPACE_BYTES,
    INFO_CPU_SECONDS,
    SECRET_ID,
    QemuImg,
    UnsafeImage,
    info_refusal,
    qcow2_header_refusal,
    qemu_options,
)

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed"),
]

PASSWORD = "chap-S3cret,with=commas"


def qemu_img(*args):
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def host_file(tmp_path):
    """A file of the host a crafted image would like the guest to read."""
    path = tmp_path / "host-secret"
    path.write_bytes(b"root:$6$hash\n" * 100)
    return path


@pytest.fixture
def with_data_file(tmp_path, host_file):
    """A qcow2 whose clusters live in another file of the host (qemu-img create -o data_file=...)."""
    path = tmp_path / "data-file.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={host_file},data_file_raw=on", str(path), "1M")
    return path


def test_a_qcow2_with_an_external_data_file_is_refused(with_data_file):
    with pytest.raises(UnsafeImage, match="image img-1 has an external data file") as caught:
        QemuImg().checked_info(with_data_file, "qcow2", "image img-1")
    assert caught.value.reschedulable is False


def test_the_header_shows_a_data_file_before_qemu_img_opens_the_image(with_data_file, tmp_path):
    assert qcow2_header_refusal(with_data_file) == "has an external data file"
    plain = tmp_path / "plain.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(plain), "1M")
    assert qcow2_header_refusal(plain) is None
    backed = tmp_path / "backed.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(plain), str(backed))
    assert qcow2_header_refusal(backed) == "has a backing file of its own"
    assert qcow2_header_refusal(backed, backing_allowed=True) is None
    raw = tmp_path / "raw"
    raw.write_bytes(b"\0" * 4096)
    assert qcow2_header_refusal(raw) is None


def test_what_qemu_img_info_reports_is_checked_too(with_data_file, tmp_path):
    # The second line of defence, for what the header check might miss: the real info of the image.
    info = json.loads(qemu_img("info", "-f", "qcow2", "--output=json", str(with_data_file)))
    assert info_refusal(info) == "has an external data file"
    plain = tmp_path / "plain.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(plain), "1M")
    backed = tmp_path / "backed.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(plain), str(backed))
    assert info_refusal(json.loads(qemu_img("info", "-f", "qcow2", "--output=json", str(plain)))) is None
    backed_info = json.loads(qemu_img("info", "-f", "qcow2", "--output=json", str(backed)))
    assert info_refusal(backed_info) == "has a backing file of its own"
    assert info_refusal(backed_info, backing_allowed=True) is None


def test_an_overlay_on_a_base_with_a_data_file_is_refused(with_data_file, tmp_path):
    overlay = tmp_path / "disk"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(with_data_file), str(overlay))

    with pytest.raises(UnsafeImage, match="external data file"):
        QemuImg().checked_overlay_chain(overlay, "the disk of instance x")


def fake_qemu_img(tmp_path, body: str) -> str:
    path = tmp_path / "fake-qemu-img"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_info_runs_under_address_space_and_cpu_limits(tmp_path):
    # The fake qemu-img prints the limits it runs under, read from the kernel, as its JSON.
    binary = fake_qemu_img(
        tmp_path,
        "awk '/^Max address space/ {a=$4} /^Max cpu time/ {c=$4} "
        'END {printf "{\\"as\\": \\"%s\\", \\"cpu\\": \\"%s\\"}", a, c}\' /proc/self/limits\n',
    )
    image = tmp_path / "image"
    image.write_bytes(b"\0" * 512)

    limits = QemuImg(binary).info(image, "raw")

    assert limits == {"as": str(INFO_ADDRESS_SPACE_BYTES), "cpu": str(INFO_CPU_SECONDS)}


def test_real_qemu_img_info_works_under_the_limits(tmp_path):
    image = tmp_path / "image.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(image), "64M")
    assert QemuImg().info(image, "qcow2")["virtual-size"] == 64 * 1024**2


def test_the_chap_password_reaches_qemu_img_in_a_private_file_not_in_its_arguments(tmp_path):
    # The fake qemu-img keeps its argv and what the secret file held, and its mode, while it ran.
    record = tmp_path / "record"
    binary = fake_qemu_img(
        tmp_path,
        f'printf "%s\\n" "$@" > {record}.argv\n'
        'for arg in "$@"; do case "$arg" in secret,*) file=${arg#*file=}; file=${file%%,*};; esac; done\n'
        f'cat "$file" > {record}.secret; stat -c %a "$file" > {record}.mode; echo "$file" > {record}.path\n',
    )
    source = tmp_path / "image.qcow2"
    target = {"driver": "iscsi", "transport": "tcp", "portal": "192.0.2.10:3260", "target": "iqn.x", "lun": "1"}

    QemuImg(binary).write_to_volume(
        source, "qcow2", target_format="raw", target_options={**target, "user": "u"}, password=PASSWORD
    )

    argv = Path(f"{record}.argv").read_text().splitlines()
    assert not any("S3cret" in arg for arg in argv)
    secret_object = argv[argv.index("--object") + 1]
    assert secret_object.startswith(f"secret,id={SECRET_ID},file=") and secret_object.endswith(",format=raw")
    assert Path(f"{record}.secret").read_text() == PASSWORD
    assert Path(f"{record}.mode").read_text().strip() == "600"
    assert not Path(Path(f"{record}.path").read_text().strip()).exists()  # gone once qemu-img is done
    assert argv[argv.index("--target-image-opts") + 2] == (
        "driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=192.0.2.10:3260,file.target=iqn.x,"
        f"file.lun=1,file.user=u,file.password-secret={SECRET_ID}"
    )
    assert argv[:5] == ["convert", "-q", "-n", "-f", "qcow2"]


def test_real_qemu_img_takes_the_iscsi_options_and_the_secret(tmp_path):
    # Against a closed port on loopback: qemu-img parses everything, then fails to connect.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = tmp_path / "image.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(source), "1M")
    target = {"driver": "iscsi", "transport": "tcp", "portal": f"127.0.0.1:{port}", "target": "iqn.x:v", "lun": "0"}

    with pytest.raises(DriverError) as caught:
        QemuImg(timeout=30).write_to_volume(
            source, "qcow2", target_format="raw", target_options={**target, "user": "u"}, password=PASSWORD
        )

    message = str(caught.value)
    assert "iSCSI" in message and "connect" in message, message
    assert "S3cret" not in message


def test_commas_in_option_values_are_doubled():
    assert qemu_options({"target": "iqn,x", "user": "a,b"}) == "target=iqn,,x,user=a,,b"


def test_a_missing_qemu_img_is_a_driver_error(tmp_path):
    with pytest.raises(DriverError, match="not installed"):
        QemuImg(str(tmp_path / "no-such-qemu-img")).run("info", "x")


def test_a_cached_image_is_inspected_once_and_again_when_its_file_changes(tmp_path, monkeypatch):
    monkeypatch.setattr("compute_tasks.drivers.qemu_img._checked_images", {})
    image = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(image), "1M")
    runs = []
    real_info = QemuImg.info
    monkeypatch.setattr(
        QemuImg, "info", lambda self, *args, **kwargs: runs.append(args) or real_info(self, *args, **kwargs)
    )
    tool = QemuImg()
    first = tool.checked_cached_info(image, "qcow2", "image img-1")
    assert tool.checked_cached_info(image, "qcow2", "image img-1") == first
    assert len(runs) == 1
    qemu_img("create", "-q", "-f", "qcow2", str(image), "2M")  # another file at the same path
    assert tool.checked_cached_info(image, "qcow2", "image img-1")["virtual-size"] == 2 * 1024 * 1024
    assert len(runs) == 2


def test_a_refused_cached_image_is_refused_again_on_its_next_use(with_data_file, monkeypatch):
    monkeypatch.setattr("compute_tasks.drivers.qemu_img._checked_images", {})
    for _attempt in range(2):
        with pytest.raises(UnsafeImage, match="external data file"):
            QemuImg().checked_cached_info(with_data_file, "qcow2", "image img-1")
