"""The metadata proxy: one per network per host, in the network's DHCP namespace, at 169.254.169.254:80.

It knows its network and sees the guest's source address, which the data plane's anti-spoofing rules
guarantee is the guest's own; it forwards each GET with both over a unix socket to the host's metadata
agent (``metadata_agent``), which signs it with the host's key and asks the control plane. It holds no
key and no credentials: after binding its port it runs as an unprivileged user.

    python -m compute_tasks.metadata_proxy --network ID --socket PATH --pid-file PATH
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import http.client
import ipaddress
import os
import pwd
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from compute_tasks import metadata_content

AGENT_TIMEOUT = 15.0
# A guest gets this long to send its request, and the guests of a network this many requests at once: a
# guest that opens connections and says nothing ties up neither the proxy nor the others for long.
CLIENT_TIMEOUT = 10.0
CONCURRENT_REQUESTS = 16


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to a server on a unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def send_reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str, method: str) -> None:
    """An answer with its length (no body for HEAD); an asker that went away is no error. The agent's too."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if method != "HEAD":
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(body)


class ProxyHandler(BaseHTTPRequestHandler):
    server_version = "metadata"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    network_id = ""
    agent_socket = ""
    timeout = CLIENT_TIMEOUT
    slots: threading.BoundedSemaphore

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._forward("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._forward("HEAD")

    def _forward(self, method: str) -> None:
        if not self.slots.acquire(blocking=False):
            self._reply(503, b"too many requests at once\n", "text/plain", method)
            return
        try:
            self._forward_one(method)
        finally:
            self.slots.release()

    def _forward_one(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        if not path.startswith("/") or len(path) > metadata_content.MAX_PATH:
            self._reply(404, b"not found\n", "text/plain", method)
            return
        address = self.client_address[0]
        connection = UnixHTTPConnection(self.agent_socket, AGENT_TIMEOUT)
        try:
            connection.request(
                method,
                path,
                headers={metadata_content.NETWORK_HEADER: self.network_id, metadata_content.ADDRESS_HEADER: address},
            )
            response = connection.getresponse()
            body = response.read()
            self._reply(response.status, body, response.getheader("Content-Type", "text/plain"), method)
        except OSError as exc:
            self.log_message("the metadata agent did not answer: %s", exc)
            self._reply(502, b"the metadata service is not available\n", "text/plain", method)
        finally:
            connection.close()

    def _reply(self, status: int, body: bytes, content_type: str, method: str) -> None:
        send_reply(self, status, body, content_type, method)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        sys.stderr.write("metadata proxy: " + (format % args) + "\n")


def _drop_privileges(user: str, group: str) -> None:
    if os.getuid() != 0:
        return
    gid = grp.getgrnam(group).gr_gid
    uid = pwd.getpwnam(user).pw_uid
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _daemonize(log_file: str) -> None:
    """Detach as dnsmasq does: whoever started it gets its exit once it listens."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compute_tasks.metadata_proxy")
    parser.add_argument("--network", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--listen", default=metadata_content.ADDRESS)
    parser.add_argument("--port", type=int, default=metadata_content.PORT)
    parser.add_argument("--user", default="nobody")
    parser.add_argument("--group", default="nogroup")
    parser.add_argument("--log", help="run in the background, writing to this file")
    args = parser.parse_args(argv)
    ipaddress.IPv4Address(args.listen)
    handler = type(
        "Handler",
        (ProxyHandler,),
        {
            "network_id": args.network,
            "agent_socket": args.socket,
            "slots": threading.BoundedSemaphore(CONCURRENT_REQUESTS),
        },
    )
    server = ThreadingHTTPServer((args.listen, args.port), handler)
    server.daemon_threads = True
    if args.log:
        _daemonize(args.log)
    pid_file = Path(args.pid_file)
    temporary = pid_file.with_suffix(".tmp")
    temporary.write_text(f"{os.getpid()}\n")
    os.replace(temporary, pid_file)
    _drop_privileges(args.user, args.group)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
