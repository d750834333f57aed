"""The host's metadata agent: a thread of the compute worker, in the host's own namespace.

The metadata proxies (one per network, in the networks' DHCP namespaces) hand it a guest's request with
the network and the guest's address over a unix socket; it signs the request with the host's key and
asks the control plane (``COMPUTE_METADATA_URL``), whose answer goes back to the guest as it is. The
socket lies in the data plane's run directory, which only root and the proxies' group can enter.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import logging
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import ThreadingMixIn, UnixStreamServer

from compute_tasks import metadata_content, signing
from compute_tasks.metadata_proxy import send_reply

log = logging.getLogger(__name__)


class _Server(ThreadingMixIn, UnixStreamServer):
    daemon_threads = True


class MetadataAgent:
    def __init__(
        self,
        socket_path: Path,
        url: str,
        signer: Callable[[], signing.Signer],
        *,
        timeout: float = 5.0,
        group: str | None = None,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.url = url.rstrip("/")
        self.signer = signer
        self.timeout = timeout
        self.group = group
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        agent = self

        class Handler(_AgentHandler):
            pass

        Handler.agent = agent
        self._server = _Server(str(self.socket_path), Handler)
        if self.group is not None and os.getuid() == 0:
            os.chown(self.socket_path, 0, grp.getgrnam(self.group).gr_gid)
        os.chmod(self.socket_path, 0o660)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metadata-agent", daemon=True)
        self._thread.start()
        log.info("metadata agent on %s, asking %s", self.socket_path, self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def ask(self, method: str, path: str, network_id: str, address: str) -> tuple[int, bytes, str]:
        """The control plane's answer to a guest's request: status, body and content type."""
        headers = metadata_content.signed_headers(
            self.signer(), method=method, path=path, network_id=network_id, address=address
        )
        request = urllib.request.Request(self.url + path, headers=headers, method=method)  # noqa: S310 - http(s) URL of the config
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, response.read(), response.headers.get("Content-Type", "text/plain")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            if exc.code >= 500 or exc.code == 403:
                log.warning(
                    "metadata for %s on network %s: the control plane answered %s", address, network_id, exc.code
                )
            return exc.code, body if exc.code == 404 else b"", exc.headers.get("Content-Type", "text/plain")
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            log.warning(
                "metadata for %s on network %s: the control plane is not reachable: %s", address, network_id, exc
            )
            return 504, b"the metadata service is not available\n", "text/plain"


class _AgentHandler(BaseHTTPRequestHandler):
    agent: MetadataAgent
    protocol_version = "HTTP/1.0"

    def address_string(self) -> str:
        return "proxy"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def _handle(self, method: str) -> None:
        network_id = self.headers.get(metadata_content.NETWORK_HEADER, "")
        address = self.headers.get(metadata_content.ADDRESS_HEADER, "")
        try:
            uuid.UUID(network_id)
            ipaddress.IPv4Address(address)
        except ValueError:
            self._reply(400, b"bad request\n", "text/plain", method)
            return
        path = self.path.split("?", 1)[0]
        if not path.startswith("/") or len(path) > metadata_content.MAX_PATH:
            self._reply(404, b"not found\n", "text/plain", method)
            return
        status, body, content_type = self.agent.ask(method, path, network_id, address)
        self._reply(status, body, content_type, method)

    def _reply(self, status: int, body: bytes, content_type: str, method: str) -> None:
        send_reply(self, status, body, content_type, method)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        log.debug("metadata agent: " + format, *args)
