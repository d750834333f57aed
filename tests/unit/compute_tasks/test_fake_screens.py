"""The fake driver's screens: a real RFB 3.8 server per running guest, as a console proxy reaches it."""

import socket
import struct

import pytest

from compute_tasks import rpc
from compute_tasks.drivers.fake import FakeDriver
from compute_tasks.drivers.fake_screen import HEIGHT, WIDTH
from compute_tasks.rpc import InstanceRef
from tests.unit.compute_tasks.test_compute_manager import make_request

pytestmark = pytest.mark.unit


def read(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def handshake(port):
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert read(conn, 12) == b"RFB 003.008\n"
    conn.sendall(b"RFB 003.008\n")
    count = read(conn, 1)[0]
    assert 1 in read(conn, count)  # no authentication offered
    conn.sendall(b"\x01")
    assert read(conn, 4) == b"\0\0\0\0"
    conn.sendall(b"\x01")  # shared
    width, height = struct.unpack(">HH", read(conn, 4))
    bits_per_pixel = read(conn, 16)[0]
    (length,) = struct.unpack(">L", read(conn, 4))
    return conn, (width, height, bits_per_pixel, read(conn, length).decode())


def test_a_running_guest_shows_a_blank_screen_and_its_screen_goes_with_it(tmp_path):
    driver = FakeDriver(screens=True)
    ref = running(driver, tmp_path)
    host, port = driver.vnc_address(ref)
    assert host == "127.0.0.1" and driver.vnc_address(ref) == (host, port)  # the same screen each time

    conn, init = handshake(port)
    assert init == (WIDTH, HEIGHT, 32, f"fake guest {ref.domain_name}")
    conn.sendall(struct.pack(">BxH", 2, 1) + struct.pack(">l", 0))  # SetEncodings: raw
    conn.sendall(struct.pack(">BBHHHH", 3, 1, 0, 0, WIDTH, HEIGHT))  # incremental: nothing changed
    conn.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, WIDTH, HEIGHT))  # full: the whole (blank) screen
    kind, rects, x, y, w, h, encoding = struct.unpack(">BxHHHHHl", read(conn, 16))
    assert (kind, rects, x, y, w, h, encoding) == (0, 1, 0, 0, WIDTH, HEIGHT, 0)
    assert read(conn, WIDTH * HEIGHT * 4) == bytes(WIDTH * HEIGHT * 4)
    conn.close()

    driver.destroy(ref)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_a_stopped_guest_has_no_screen(tmp_path):
    driver = FakeDriver(screens=True)
    ref = running(driver, tmp_path)
    _, port = driver.vnc_address(ref)
    assert driver.power_off(ref) == rpc.SHUTDOWN
    assert driver.vnc_address(ref) == (None, None)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def running(driver, tmp_path) -> InstanceRef:
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"base")
    request = make_request()
    spawned = driver.spawn(request, base, power_on=True)
    assert spawned.power_state == rpc.RUNNING
    return InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name)
