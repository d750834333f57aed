"""The metadata proxies: one per network with DHCP, in its DHCP namespace, at 169.254.169.254:80.

Each is a small process of this package (``compute_tasks.metadata_proxy``) that hands the guests'
requests to the host's metadata agent over a unix socket in the data plane's run directory. Started
like dnsmasq (it detaches once it listens), checked by its command line, restarted when it died.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from compute_tasks.dataplane.commands import Runner, process_cmdline, stop_process

START_TIMEOUT = 10.0
SOCKET_NAME = "metadata.sock"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class MetadataProxies:
    def __init__(self, runner: Runner, run_dir: Path, group: str) -> None:
        self.runner = runner
        self.run_dir = Path(run_dir)
        self.group = group

    @property
    def socket_path(self) -> Path:
        return self.run_dir / SOCKET_NAME

    def _files(self, network_id: str) -> tuple[Path, Path]:
        directory = self.run_dir / network_id
        return directory / "metadata.pid", directory / "metadata.log"

    def command(self, network_id: str) -> list[str]:
        pid_file, log_file = self._files(network_id)
        return [
            sys.executable, "-m", "compute_tasks.metadata_proxy", "--network", network_id,
            "--socket", str(self.socket_path), "--pid-file", str(pid_file), "--log", str(log_file),
            "--group", self.group,
        ]  # fmt: skip

    def pid(self, network_id: str) -> int | None:
        pid_file, _ = self._files(network_id)
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if process_cmdline(pid) == self.command(network_id) else None

    def ensure(self, network_id: str, namespace: str) -> bool:
        """The proxy of ``network_id`` runs in ``namespace``; True when it had to be started."""
        if self.pid(network_id) is not None:
            return False
        pid_file, _ = self._files(network_id)
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
        self.runner.run(["env", f"PYTHONPATH={path}", *self.command(network_id)], netns=namespace)
        deadline = time.monotonic() + START_TIMEOUT
        while self.pid(network_id) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the metadata proxy of network {network_id} did not start")
            time.sleep(0.02)
        return True

    def stop(self, network_id: str) -> None:
        pid = self.pid(network_id)
        if pid is None:
            return
        stop_process(pid)
