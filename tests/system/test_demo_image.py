"""The demo guest image boots under real QEMU through libvirt.

A full round trip on qemu:///system: define a domain on a qcow2 overlay of
var/images/demo.qcow2 with an OpenStack config drive, start it, find the banner and the
config drive's hostname on the serial log, run a command in the serial shell, look at the VGA
screen, then destroy and undefine it and check that nothing is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import time
import uuid
import zlib
from pathlib import Path
from xml.sax.saxutils import quoteattr

import libvirt
import pytest

pytestmark = pytest.mark.system

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_demo_image.sh"
IMAGE_DIR = REPO_ROOT / "var" / "images"
LIBVIRT_URI = os.environ.get("LIBVIRT_URI", "qemu:///system")

BANNER = "Welcome to the cloud demo guest"
PROMPT = "demo# "
BOOT_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def connection():
    # libvirt prints every error to stderr by default, including the expected "no domain" below.
    libvirt.registerErrorHandler(lambda _context, _error: None, None)
    conn = libvirt.open(LIBVIRT_URI)
    yield conn
    conn.close()


def domain_xml(*, name: str, disk: Path, config_drive: Path, serial_log: Path) -> str:
    return f"""
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={quoteattr(str(disk))}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file={quoteattr(str(config_drive))}/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <serial type='pty'>
      <log file={quoteattr(str(serial_log))} append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
  </devices>
</domain>
"""


def make_config_drive(directory: Path, *, hostname: str, user_data: str) -> Path:
    """An OpenStack config drive (ISO 9660, label config-2) with metadata and a user-data script."""
    latest = directory / "config-drive" / "openstack" / "latest"
    latest.mkdir(parents=True)
    meta_data = {"uuid": str(uuid.uuid4()), "hostname": hostname, "name": hostname}
    (latest / "meta_data.json").write_text(json.dumps(meta_data))
    (latest / "user_data").write_text(user_data)
    iso = directory / "config-drive.iso"
    source = directory / "config-drive"
    subprocess.run(
        ["genisoimage", "-quiet", "-o", str(iso), "-V", "config-2", "-r", "-J", str(source)],
        check=True,
        timeout=60,
    )
    return iso


def read_log(path: Path) -> str:
    # The serial log holds terminal escape sequences too; only the text matters here.
    return path.read_bytes().decode("utf-8", errors="replace") if path.exists() else ""


def wait_for_log(path: Path, pattern: re.Pattern[str], *, timeout: float) -> re.Match[str] | None:
    deadline = time.monotonic() + timeout
    while True:
        match = pattern.search(read_log(path))
        if match:
            return match
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def screenshot(conn, domain) -> tuple[str, bytes]:
    stream = conn.newStream(0)
    try:
        mime_type = domain.screenshot(stream, 0, 0)
        chunks = []
        while chunk := stream.recv(256 * 1024):
            chunks.append(chunk)
        stream.finish()
    except libvirt.libvirtError:
        stream.abort()
        raise
    return mime_type, b"".join(chunks)


def decode_pixels(mime_type: str, data: bytes) -> tuple[int, int, bytes]:
    """Width, height and packed RGB bytes of a PNG (8-bit RGB/RGBA) or binary PPM screenshot."""
    if mime_type == "image/x-portable-pixmap" or data.startswith(b"P6"):
        header = re.match(rb"P6\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
        assert header, "unreadable PPM header"
        width, height = int(header[1]), int(header[2])
        return width, height, data[header.end() : header.end() + width * height * 3]

    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"unexpected screenshot type {mime_type}"
    position, idat = 8, b""
    width = height = channels = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, "unsupported PNG layout"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for row_index in range(height):
        start = row_index * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            upper_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - upper_left
                distances = (abs(estimate - left), abs(estimate - up), abs(estimate - upper_left))
                predictor = (left, up, upper_left)[distances.index(min(distances))]
                line[i] = (line[i] + predictor) & 0xFF
        rows.append(line)
        previous = line
    pixels = b"".join(bytes(row[i : i + 3]) for row in rows for i in range(0, stride, channels))
    return width, height, pixels


def qemu_processes_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"guest={name},".encode() in command_line or f"guest={name}\0".encode() in command_line:
            found.append(int(entry.name))
    return found


def test_build_script_is_idempotent_and_writes_a_matching_checksum(demo_image: Path):
    modified = demo_image.stat().st_mtime_ns

    result = subprocess.run([str(BUILD_SCRIPT), str(IMAGE_DIR)], check=True, timeout=60, capture_output=True, text=True)

    assert "up to date" in result.stderr
    assert demo_image.stat().st_mtime_ns == modified
    recorded_hash, recorded_name = (demo_image.parent / "demo.qcow2.sha256").read_text().split()
    assert recorded_name == "demo.qcow2"
    assert recorded_hash == hashlib.sha256(demo_image.read_bytes()).hexdigest()


def test_demo_guest_boots_to_a_shell_on_an_overlay(connection, demo_image: Path, tmp_path: Path, record_property):
    assert shutil.which("qemu-img") and shutil.which("genisoimage"), "run scripts/bootstrap.sh first"
    base_hash = hashlib.sha256(demo_image.read_bytes()).hexdigest()
    token = uuid.uuid4().hex[:8]
    name = f"test-demo-{token}"
    hostname = f"guest-{token}"
    overlay = tmp_path / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(demo_image), str(overlay)],
        check=True,
        timeout=30,
    )
    config_drive = make_config_drive(
        tmp_path, hostname=hostname, user_data=f"#!/bin/sh\necho user-data-{token}-$((20 + 3))\n"
    )
    serial_log = tmp_path / "serial.log"

    domain = connection.defineXML(domain_xml(name=name, disk=overlay, config_drive=config_drive, serial_log=serial_log))
    try:
        started = time.monotonic()
        domain.create()

        banner = wait_for_log(
            serial_log,
            re.compile(re.escape(BANNER) + r"\r?\n" + re.escape(hostname) + r"\r?\n"),
            timeout=BOOT_TIMEOUT_S,
        )
        seconds_to_banner = time.monotonic() - started
        record_property("seconds_to_banner", round(seconds_to_banner, 2))
        print(f"demo guest banner {seconds_to_banner:.1f} s after start")
        assert banner, f"no banner within {BOOT_TIMEOUT_S} s; serial log:\n{read_log(serial_log)}"
        assert wait_for_log(serial_log, re.compile(rf"user-data-{token}-23"), timeout=COMMAND_TIMEOUT_S)
        assert wait_for_log(serial_log, re.compile(re.escape(PROMPT)), timeout=COMMAND_TIMEOUT_S)

        # The shell evaluates the arithmetic, so the answer cannot be the terminal's echo of the input.
        console = connection.newStream(0)
        domain.openConsole(None, console, 0)
        try:
            answer = None
            for _attempt in range(3):
                console.send(f"echo marker-{token}-$((6 * 7))\r".encode())
                answer = wait_for_log(serial_log, re.compile(f"marker-{token}-42"), timeout=COMMAND_TIMEOUT_S)
                if answer:
                    break
        finally:
            console.abort()
        assert answer, f"the serial shell did not answer; serial log:\n{read_log(serial_log)}"

        live_xml = domain.XMLDesc(0)
        vnc_port = int(re.search(r"<graphics type='vnc' port='(\d+)'", live_xml)[1])
        assert vnc_port >= 5900

        mime_type, image = screenshot(connection, domain)
        width, height, pixels = decode_pixels(mime_type, image)
        assert width >= 640 and height >= 400
        lit = sum(1 for i in range(0, len(pixels), 3) if max(pixels[i : i + 3]) > 128)
        # Text on a black text-mode screen: some pixels lit, most not.
        assert 0.001 < lit / (width * height) < 0.5, f"{lit} of {width * height} pixels lit"
    finally:
        if domain.isActive():
            domain.destroy()
        domain.undefine()

    with pytest.raises(libvirt.libvirtError) as missing:
        connection.lookupByName(name)
    assert missing.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
    assert name not in [listed.name() for listed in connection.listAllDomains()]
    assert qemu_processes_named(name) == []
    assert hashlib.sha256(demo_image.read_bytes()).hexdigest() == base_hash, "the base image was written to"
