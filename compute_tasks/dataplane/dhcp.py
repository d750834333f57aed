"""One dnsmasq per network, in a namespace of its own, serving static leases to this host's ports.

dnsmasq drops its privileges to ``nobody`` and re-reads its files as that user on SIGHUP, so its files
live in a directory of their own under ``/run`` (group ``nogroup``, nothing else readable), not in the
host's private state directory. A changed file gets a SIGHUP; a changed command line a restart.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import shutil
import signal
import time
from pathlib import Path

from compute_tasks.dataplane.commands import Runner, process_cmdline, stop_process
from compute_tasks.dataplane.desired import Dhcp

log = logging.getLogger(__name__)

DNSMASQ_USER = "nobody"
START_TIMEOUT = 5.0


def _group() -> str:
    for name in ("nogroup", "nobody"):
        with contextlib.suppress(KeyError):
            grp.getgrnam(name)
            return name
    return "root"


class DhcpServers:
    def __init__(self, runner: Runner, run_dir: Path) -> None:
        self.runner = runner
        self.run_dir = Path(run_dir)
        self.group = _group()

    def directory(self, network_id: str) -> Path:
        return self.run_dir / network_id

    def command(self, network_id: str, dhcp: Dhcp) -> list[str]:
        d = self.directory(network_id)
        return [
            "dnsmasq",
            *dhcp.args,
            f"--pid-file={d / 'pid'}",
            f"--dhcp-hostsfile={d / 'hosts'}",
            f"--dhcp-optsfile={d / 'opts'}",
            f"--addn-hosts={d / 'addn_hosts'}",
            f"--user={DNSMASQ_USER}",
            f"--group={self.group}",
        ]

    def ensure(self, network_id: str, dhcp: Dhcp) -> tuple[bool, bool]:
        """Files written and dnsmasq running with the right command line. Returns (files changed,
        process started or restarted)."""
        d = self.directory(network_id)
        self._private_group_dir(d)
        changed = False
        for name, content in (("hosts", dhcp.hosts), ("opts", dhcp.options), ("addn_hosts", dhcp.addn_hosts)):
            changed |= self._write(d / name, content)
        command = self.command(network_id, dhcp)
        pid = self.pid(network_id)
        if pid is not None and process_cmdline(pid) == command and _in_namespace(pid, dhcp.namespace):
            if changed:
                os.kill(pid, signal.SIGHUP)
            return changed, False
        if pid is not None:
            stop_process(pid)
        self._start(dhcp.namespace, network_id, command)
        return changed, True

    def pid(self, network_id: str) -> int | None:
        try:
            pid = int((self.directory(network_id) / "pid").read_text().strip())
        except (OSError, ValueError):
            return None
        cmdline = process_cmdline(pid)
        return pid if cmdline and cmdline[0] == "dnsmasq" else None

    def stop(self, network_id: str) -> None:
        pid = self.pid(network_id)
        if pid is not None:
            stop_process(pid)
        shutil.rmtree(self.directory(network_id), ignore_errors=True)

    def _start(self, namespace: str, network_id: str, command: list[str]) -> None:
        pid_file = self.directory(network_id) / "pid"
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        # dnsmasq makes itself a daemon: this returns once it listens, and it is nobody's child here.
        self.runner.run(command, netns=namespace)
        deadline = time.monotonic() + START_TIMEOUT
        while self.pid(network_id) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"dnsmasq for network {network_id} did not start")
            time.sleep(0.02)

    def _private_group_dir(self, path: Path) -> None:
        gid = grp.getgrnam(self.group).gr_gid
        # Whatever the worker's umask (077): dnsmasq must be able to pass through the parent, and only that.
        parent = self.run_dir.parent
        parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        if parent.stat().st_mode & 0o011 != 0o011:
            os.chmod(parent, parent.stat().st_mode & 0o700 | 0o011)  # noqa: S103 - traverse only
        for directory in (self.run_dir, path):
            directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            os.chown(directory, 0, gid)
            os.chmod(directory, 0o750)  # noqa: S103 - dnsmasq's group reads it, nobody else

    def _write(self, path: Path, content: str) -> bool:
        try:
            if path.read_text() == content:
                return False
        except OSError:
            pass
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        os.chown(temporary, 0, grp.getgrnam(self.group).gr_gid)
        os.chmod(temporary, 0o640)
        os.replace(temporary, path)
        return True


def _in_namespace(pid: int, namespace: str) -> bool:
    """Whether the process runs in the named namespace (not in one deleted and made again since)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{namespace}").st_ino
    except OSError:
        return False
