"""Screens for the fake driver's guests: each running guest gets a VNC server of its own on an ephemeral
port, speaking RFB 3.8 without authentication and showing a blank screen, so that the console proxy and
its clients (noVNC, Tempest) reach a real RFB peer behind a simulated guest."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

WIDTH, HEIGHT = 320, 200
# 32 bits a pixel, depth 24, little-endian true colour, 8 bits of red, green and blue.
PIXEL_FORMAT = struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
_SECURITY_NONE = 1


class FakeScreens:
    """The screens of one fake host, by domain name."""

    def __init__(self, host: str) -> None:
        self._host = host
        self._screens: dict[str, _Screen] = {}
        self._lock = threading.Lock()

    def port_for(self, name: str) -> int:
        """The port of the guest's screen, opened the first time it is asked for."""
        with self._lock:
            screen = self._screens.get(name)
            if screen is None:
                screen = self._screens[name] = _Screen(self._host, name)
            return screen.port

    def close(self, name: str) -> None:
        with self._lock:
            screen = self._screens.pop(name, None)
        if screen is not None:
            screen.close()

    def open_for(self) -> set[str]:
        with self._lock:
            return set(self._screens)


class _Screen:
    def __init__(self, host: str, name: str) -> None:
        self.name = name
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name=f"screen-{name[:8]}", daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, struct.error):  # the client went away
            self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        conn.sendall(b"RFB 003.008\n")
        _read(conn, 12)  # the client's version
        conn.sendall(bytes([1, _SECURITY_NONE]))
        if _read(conn, 1)[0] != _SECURITY_NONE:
            conn.sendall(struct.pack(">L", 1))
            return
        conn.sendall(struct.pack(">L", 0))  # security handshake done
        _read(conn, 1)  # ClientInit (shared or not: any client may look)
        title = f"fake guest {self.name}".encode()
        conn.sendall(struct.pack(">HH", WIDTH, HEIGHT) + PIXEL_FORMAT + struct.pack(">L", len(title)) + title)
        bytes_per_pixel = 4
        while True:
            kind = _read(conn, 1)[0]
            if kind == 0:  # SetPixelFormat
                bytes_per_pixel = max(1, _read(conn, 19)[3] // 8)
            elif kind == 2:  # SetEncodings
                count = struct.unpack(">xH", _read(conn, 3))[0]
                _read(conn, 4 * count)
            elif kind == 3:  # FramebufferUpdateRequest
                incremental = _read(conn, 9)[0]
                if not incremental:  # nothing ever changes: only a full request gets the (blank) screen
                    header = struct.pack(">BxHHHHHl", 0, 1, 0, 0, WIDTH, HEIGHT, 0)
                    conn.sendall(header + bytes(WIDTH * HEIGHT * bytes_per_pixel))
            elif kind == 4:  # KeyEvent
                _read(conn, 7)
            elif kind == 5:  # PointerEvent
                _read(conn, 5)
            elif kind == 6:  # ClientCutText
                length = struct.unpack(">3xL", _read(conn, 7))[0]
                _read(conn, length)
            else:
                return  # not RFB: hang up


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data
