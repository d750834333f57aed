"""The system calls of the Linux data plane: ``ip``, ``bridge``, ``nft`` and ``dnsmasq``, in a namespace.

Every command has a timeout; state is read as JSON (``ip -j``, ``bridge -j``). Nothing here decides
anything: ``LinuxDataplane`` does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess  # noqa: S404 - fixed argument lists, never a shell
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 20.0


class CommandFailed(RuntimeError):
    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        self.args_ = args
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(args)}: exit {returncode}: {self.stderr[:500]}")


@dataclass(frozen=True)
class Link:
    name: str
    kind: str  # "bridge", "vxlan", "veth", "tun", "" for a plain interface
    master: str
    mtu: int
    up: bool
    mac: str
    vxlan: dict[str, Any]


class Runner:
    """Runs the tools in one network namespace ("" for this process's own)."""

    def __init__(self, namespace: str = "", timeout: float = COMMAND_TIMEOUT) -> None:
        self.namespace = namespace
        self.timeout = timeout

    def run(self, args: list[str], *, input: str | None = None, check: bool = True, netns: str | None = None) -> str:
        """Run a command in ``netns`` (default: the data plane's namespace); its stdout."""
        namespace = self.namespace if netns is None else netns
        full = (["ip", "netns", "exec", namespace, *args]) if namespace else list(args)
        return self._exec(full, input=input, check=check)

    def ip(self, *args: str, check: bool = True, netns: str | None = None, input: str | None = None) -> str:
        namespace = self.namespace if netns is None else netns
        return self._exec(["ip", *(("-n", namespace) if namespace else ()), *args], check=check, input=input)

    def bridge(self, *args: str, check: bool = True, input: str | None = None) -> str:
        return self._exec(
            ["bridge", *(("-n", self.namespace) if self.namespace else ()), *args], check=check, input=input
        )

    def ip_batch(self, lines: list[str]) -> None:
        """Many ``ip`` commands in one process; the first that fails stops the batch and raises."""
        if lines:
            self.ip("-batch", "-", input="".join(line + "\n" for line in lines))

    def bridge_batch(self, lines: list[str]) -> None:
        if lines:
            self.bridge("-batch", "-", input="".join(line + "\n" for line in lines))

    def links(self) -> dict[str, Link]:
        data = json.loads(self.ip("-j", "-d", "link", "show") or "[]")
        links = {}
        for item in data:
            info = item.get("linkinfo") or {}
            links[item["ifname"]] = Link(
                name=item["ifname"],
                kind=info.get("info_kind", ""),
                master=item.get("master", ""),
                mtu=int(item.get("mtu", 0)),
                up="UP" in item.get("flags", []),
                mac=item.get("address", ""),
                vxlan=info.get("info_data", {}) if info.get("info_kind") == "vxlan" else {},
            )
        return links

    def fdb(self, device: str) -> list[dict[str, Any]]:
        return json.loads(self.bridge("-j", "fdb", "show", "dev", device) or "[]")

    def fdb_all(self) -> list[dict[str, Any]]:
        return json.loads(self.bridge("-j", "fdb", "show") or "[]")

    def ip_json(self, *args: str) -> list[dict[str, Any]]:
        return json.loads(self.ip(*args) or "[]")

    def namespaces(self) -> set[str]:
        data = json.loads(self._exec(["ip", "-j", "netns", "list"]) or "[]")
        return {item["name"] for item in data}

    def _exec(self, args: list[str], *, input: str | None = None, check: bool = True) -> str:
        try:
            done = subprocess.run(  # noqa: S603 - fixed argument list
                args, input=input, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise CommandFailed(args, -1, f"no answer in {self.timeout:g}s") from None
        if check and done.returncode != 0:
            raise CommandFailed(args, done.returncode, done.stderr)
        return done.stdout


# --- the data plane's own daemons (dnsmasq, the metadata proxies) ------------------------------------------


def process_cmdline(pid: int) -> list[str]:
    """The command line of process ``pid``; [] when it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    if not raw:
        return []  # a zombie
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def stop_process(pid: int, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while process_cmdline(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if process_cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
