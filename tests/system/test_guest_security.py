"""A real guest cannot reach the host's own services, and its files on the host are private.

The compute driver boots the demo image on qemu:///system with one user-mode NIC and a user-data script
that, once DHCP has given it an address, knocks on the host's loopback through 10.0.2.2 (QEMU's name for
it): a listener this test opens on 127.0.0.1, and the broker's Redis on 6379. The script prints what each
knock brought back on the serial port. Every knock must fail, and the listener must see no connection.
While the guest runs, its disk, config drive and serial log are 0600 in 0700 directories.

Run with the restriction taken out of the domain XML, the same test fails: the guest reads the
listener's greeting and Redis's +PONG (see docs/security-guests.md).

Network rule of this project: the guest sends only to 10.0.2.2 (the host's loopback).
"""

from __future__ import annotations

import base64
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from compute_tasks.drivers.base import USER_NETWORK_GUEST_ADDRESS
from compute_tasks.drivers.libvirt_driver import LibvirtDriver
from compute_tasks.rpc import BuildRequest, FlavorSpec, ImageSpec, InstanceMetadata, InstanceRef, NicSpec
from tests.file_modes import mode_of

pytestmark = pytest.mark.system

REPO_ROOT = Path(__file__).resolve().parents[2]
# Used as it is: the session fixture in conftest.py may rebuild the image, and this test only reads it.
DEMO_IMAGE = REPO_ROOT / "var" / "images" / "demo.qcow2"
REDIS_PORT = 6379
PROBE_TIMEOUT_S = 120.0


class Listener:
    """A TCP server on the host's loopback that greets whoever connects, and counts them."""

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.sendall(self.greeting)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


def probe_script(token: str, ports: list[int]) -> str:
    # busybox in the demo guest: nc connects, `timeout` bounds it (Redis keeps the connection open).
    lines = [
        "#!/bin/sh",
        "i=0",
        "while ! ip -4 addr show dev eth0 2>/dev/null | grep -q 'inet '; do",
        "    i=$((i + 1)); [ $i -ge 60 ] && break; sleep 0.5",
        "done",
        f"echo \"probe-{token} address $(ip -4 addr show dev eth0 | sed -n 's/.*inet \\([0-9.]*\\).*/\\1/p')\"",
    ]
    for port in ports:
        lines.append(f"reply=$(printf 'PING\\r\\n' | timeout 5 nc 10.0.2.2 {port} 2>&1 | tr -cd 'A-Za-z0-9 +:()._-')")
        lines.append(f'echo "probe-{token} port {port} reply=[$reply]"')
    lines.append(f"echo probe-{token} done")
    return "\n".join(lines) + "\n"


@dataclass
class ProbedGuest:
    """A running demo guest whose user data has knocked on the host's ports and printed the replies."""

    instance_dir: Path
    token: str
    listener: Listener
    output: str


@pytest.fixture(scope="module")
def probed_guest(tmp_path_factory):
    if not DEMO_IMAGE.is_file():
        pytest.skip(f"{DEMO_IMAGE} is missing: run scripts/build_demo_image.sh")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    previous_umask = os.umask(0o022)  # the usual one: the files must be private regardless
    driver = LibvirtDriver(
        uri="qemu:///system",
        virt_type="qemu",
        instances_dir=tmp_path_factory.mktemp("guest-security") / "instances",
        vnc_listen="127.0.0.1",
        vnc_host="127.0.0.1",
        shutdown_timeout=5,
    )
    token = uuid.uuid4().hex[:8]
    listener = Listener(f"+PONG-{token}\r\n".encode())
    instance_uuid = str(uuid.uuid4())
    request = BuildRequest(
        instance_uuid=instance_uuid,
        domain_name=f"test-guest-security-{token}",
        flavor=FlavorSpec(name="tiny", vcpus=1, memory_mb=256, root_gb=0),
        image=ImageSpec(id="demo", url="http://unused.invalid/", sha256="0" * 64, size=1),
        nics=[NicSpec(mac="52:54:00:5a:00:01", network="user")],
        user_data=base64.b64encode(probe_script(token, [listener.port, REDIS_PORT]).encode()).decode(),
        metadata=InstanceMetadata(uuid=instance_uuid, name="probe", hostname=f"probe-{token}", project_id="p"),
    )
    instance_dir = driver.instances_dir / instance_uuid
    log = instance_dir / "console.log"
    done = re.compile(rf"probe-{token} done")
    try:
        driver.spawn(request, DEMO_IMAGE)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while not (log.exists() and done.search(_text(log))):
            assert time.monotonic() < deadline, f"the probes did not finish; serial log:\n{_text(log)}"
            time.sleep(0.2)
        yield ProbedGuest(instance_dir=instance_dir, token=token, listener=listener, output=_text(log))
    finally:
        driver.destroy(InstanceRef(instance_uuid=instance_uuid, domain_name=request.domain_name))
        driver.close()
        listener.close()
        os.umask(previous_umask)


def test_a_guest_on_the_user_network_reaches_nothing_on_the_host(probed_guest):
    token, output, listener = probed_guest.token, probed_guest.output, probed_guest.listener
    replies = dict(re.findall(rf"probe-{token} port (\d+) reply=\[([^\]\r\n]*)\]", output))
    address = re.search(rf"probe-{token} address (\S*)", output)
    print(f"guest address {address and address[1]!r}, replies {replies}")
    # DHCP still works on the walled-off network: the guest has its usual address.
    assert re.search(rf"probe-{token} address {re.escape(USER_NETWORK_GUEST_ADDRESS)}\b", output), output
    assert set(replies) == {str(listener.port), str(REDIS_PORT)}, output
    reached = {port: reply for port, reply in replies.items() if "PONG" in reply}
    assert reached == {}, "the guest reached services on the host's loopback"
    assert listener.connections == 0


def test_a_running_guest_s_files_are_private(probed_guest):
    # QEMU and virtlogd have had the files open for the whole boot: they kept the modes the driver set.
    instance_dir = probed_guest.instance_dir
    assert mode_of(instance_dir.parent) == mode_of(instance_dir) == 0o700
    files = {path.name: mode_of(path) for path in instance_dir.iterdir()}
    assert files == {"disk": 0o600, "disk.config": 0o600, "console.log": 0o600}
    assert (instance_dir / "console.log").stat().st_size > 0


def _text(log: Path) -> str:
    return log.read_bytes().decode("utf-8", errors="replace") if log.exists() else ""
