"""A small blocking RFC 6455 websocket client for driving the console proxy in tests.

websockify's own client drops the URL query (where the token travels), so the tests speak the protocol
themselves: an HTTP/1.1 upgrade, masked binary frames out, unmasked frames in.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import ssl
import struct

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeRefused(Exception):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"websocket upgrade refused with HTTP {status}")
        self.status = status
        self.body = body


class ConnectionClosed(Exception):
    """The server closed the websocket (close frame, or end of stream when code is None)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"websocket closed: {code} {reason}")
        self.code = code
        self.reason = reason


class WebSocketClient:
    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self._sock = sock
        self._buffer = buffered
        self._received = b""

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        path: str,
        *,
        origin: str | None = None,
        cookie: str | None = None,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> WebSocketClient:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin is not None:
            lines.append(f"Origin: {origin}")
        if cookie is not None:
            lines.append(f"Cookie: {cookie}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                raise HandshakeRefused(0, data)
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 101:
            length = int(headers.get("content-length", "0"))
            while len(rest) < length:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
            sock.close()
            raise HandshakeRefused(status, rest)
        expected = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324
        if headers.get("sec-websocket-accept") != expected:
            sock.close()
            raise AssertionError("wrong Sec-WebSocket-Accept from the proxy")
        return cls(sock, rest)

    def send_binary(self, payload: bytes) -> None:
        self._send_frame(_OP_BINARY, payload)

    def recv_exactly(self, count: int) -> bytes:
        """The next `count` bytes of the binary stream, whatever the framing."""
        while len(self._received) < count:
            self._received += self.recv_message()
        data, self._received = self._received[:count], self._received[count:]
        return data

    def recv_message(self) -> bytes:
        message = b""
        while True:
            fin, opcode, payload = self._recv_frame()
            if opcode == _OP_PING:
                self._send_frame(_OP_PONG, payload)
                continue
            if opcode == _OP_PONG:
                continue
            if opcode == _OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                raise ConnectionClosed(code, payload[2:].decode("utf-8", "replace"))
            if opcode in (_OP_BINARY, _OP_TEXT, _OP_CONTINUATION):
                message += payload
                if fin:
                    return message

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(_OP_CLOSE, struct.pack(">H", 1000))
        self._sock.close()

    def __enter__(self) -> WebSocketClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", length)
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self._sock.sendall(header + mask + masked)

    def _recv_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read(8))[0]
        mask = self._read(4) if second & 0x80 else None
        payload = self._read(length)
        if mask is not None:
            payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        return bool(first & 0x80), first & 0x0F, payload

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionClosed(None, "end of stream")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data
