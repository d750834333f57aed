"""One private libvirtd per hypervisor host, so that several real libvirt hosts run on one machine.

A host is a directory with ``etc/ run/ lib/ log/ cache/``. Its libvirtd runs in a mount namespace of its own
(``unshare -m --propagation private``) in which those directories are bind-mounted over /etc/libvirt,
/run/libvirt, /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt, so it shares no domain, socket,
log or pid file with the system's libvirtd or with another host. Each host listens on its own loopback
address: libvirt's TCP port for migrations from other hosts, its guests' VNC servers, and QEMU's migration
ports, each in a port range of its own. The system libvirtd is never touched.

    python scripts/libvirt_host.py start DIR --address 127.0.0.21 [--cache-dir /var/tmp/...]
    python scripts/libvirt_host.py stop DIR

``start`` prints the host's libvirt URI. No Django here: tests and ``scripts/demo.py`` import this module.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# Where each directory of a host is mounted inside its namespace.
MOUNTS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
LIBVIRT_TCP_PORT = 16509
# The first probe of QEMU's capabilities takes about 9 s on these machines; a kept cache/ makes it <1 s.
START_TIMEOUT = 60.0

# The system qemu.conf's lines (scripts/start_services.sh): containers have no cgroup delegation, no
# namespaces for QEMU and no security driver to speak of.
QEMU_CONF_COMMON = """\
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
namespaces = []
cgroup_controllers = []
remember_owner = 0
"""


class HostError(RuntimeError):
    """A private libvirtd did not start or stop; the message says why (with the end of its log)."""


def port_ranges(address: str) -> tuple[range, range]:
    """The VNC and migration port ranges of the host at ``address``: 100 ports each from
    ``10000 + 200 * last octet``, so hosts on 127.0.0.21 .. 127.0.0.29 never ask QEMU for the same port
    (libvirt checks a port is free on every address, so ranges that overlap would race between daemons)."""
    octet = ipaddress.IPv4Address(address).packed[-1]
    base = 10000 + 200 * octet
    return range(base, base + 100), range(base + 100, base + 200)


@dataclass(frozen=True)
class LibvirtHost:
    """A private libvirtd for the hypervisor host whose files are under ``directory``."""

    directory: Path
    address: str
    cache_dir: Path | None = None  # kept elsewhere so the capability probe survives a fresh directory

    def __post_init__(self):
        if not ipaddress.ip_address(self.address).is_loopback and not ipaddress.ip_address(self.address).is_private:
            raise HostError(f"{self.address} is not a loopback or private address")
        object.__setattr__(self, "directory", Path(self.directory).resolve())
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir).resolve())

    # --- what other processes need to know ----------------------------------------------------------

    @property
    def socket(self) -> Path:
        return self.directory / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        """How a process in the root namespace (this host's compute worker) connects."""
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def tcp_uri(self) -> str:
        """How other hosts' libvirtds reach this one (migrations)."""
        return f"qemu+tcp://{self.address}/system"

    @property
    def vnc_listen(self) -> str:
        return self.address

    @property
    def migration_address(self) -> str:
        return self.address

    @property
    def qemu_log_dir(self) -> Path:
        return self.directory / "log" / "qemu"

    @property
    def log_path(self) -> Path:
        return self.directory / "libvirtd.out"

    def host_uuid(self) -> str:
        """The host's own UUID, made once and kept: two daemons with the same one refuse to migrate between
        them ("Attempt to migrate guest to the same host"), and there is no DMI UUID here."""
        path = self.directory / "host-uuid"
        if not path.exists():
            path.write_text(f"{uuid.uuid4()}\n")
        return path.read_text().strip()

    def environment(self) -> dict[str, str]:
        """The compute worker's settings for this host (see compute_tasks/config.py)."""
        return {
            "COMPUTE_LIBVIRT_URI": self.uri,
            "COMPUTE_VIRT_TYPE": "qemu",
            "COMPUTE_VNC_LISTEN": self.vnc_listen,
            "COMPUTE_MIGRATION_ADDRESS": self.migration_address,
        }

    # --- configuration ------------------------------------------------------------------------------

    def write_config(self) -> None:
        """Write etc/ afresh (never a copy of the system's /etc/libvirt, which holds its domains); domain
        definitions kept in etc/qemu/ from an earlier run stay."""
        for name in MOUNTS:
            self._dir(name).mkdir(parents=True, exist_ok=True)
        vnc, migration = port_ranges(self.address)
        etc = self._dir("etc")
        (etc / "libvirtd.conf").write_text(
            f"""\
listen_tls = 0
listen_tcp = 1
listen_addr = "{self.address}"
tcp_port = "{LIBVIRT_TCP_PORT}"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "{self.host_uuid()}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""
        )
        (etc / "qemu.conf").write_text(
            QEMU_CONF_COMMON
            + f"""\
vnc_listen = "{self.vnc_listen}"
remote_display_port_min = {vnc.start}
remote_display_port_max = {vnc.stop - 1}
migration_address = "{self.migration_address}"
migration_host = "{self.migration_address}"
migration_port_min = {migration.start}
migration_port_max = {migration.stop - 1}
"""
        )
        (etc / "virtlogd.conf").write_text('log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n')

    def _dir(self, name: str) -> Path:
        if name == "cache" and self.cache_dir is not None:
            return self.cache_dir
        return self.directory / name

    # --- running ------------------------------------------------------------------------------------

    def _pid(self, name: str) -> int | None:
        """The pid in run/<name>.pid if that process is alive and is ``name``."""
        try:
            pid = int((self._dir("run") / f"{name}.pid").read_text().strip())
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError):
            return None
        return pid if os.path.basename(command).decode(errors="replace") == name else None

    def running(self) -> bool:
        return self._pid("libvirtd") is not None

    def answers(self) -> bool:
        probe = subprocess.run(
            ["virsh", "-c", self.uri, "version"], capture_output=True, timeout=10, check=False, stdin=subprocess.DEVNULL
        )
        return probe.returncode == 0

    def start(self, timeout: float = START_TIMEOUT) -> LibvirtHost:
        """Start the daemon (and its virtlogd) unless it runs already, and wait until its socket answers."""
        if self.running() and self.answers():
            return self
        self.write_config()
        binds = " && ".join(f'mount --bind "{self._dir(name)}" {target}' for name, target in MOUNTS.items())
        script = (
            f"{binds} && "
            "{ virtlogd -d -f /etc/libvirt/virtlogd.conf -p /run/libvirt/virtlogd.pid || true; } && "
            "exec libvirtd --listen -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid"
        )
        with self.log_path.open("ab") as log:
            daemon = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not in the caller's process group: Ctrl-C stops it only through stop()
            )
        deadline = time.monotonic() + timeout
        while not (self.socket.exists() and self.answers()):
            if daemon.poll() is not None:
                raise HostError(f"libvirtd for {self.address} exited ({daemon.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise HostError(f"libvirtd for {self.address} did not answer within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the guests' QEMUs, the libvirtd and the virtlogd of this host, found by their pid files."""
        qemus = []
        for pid_file in (self._dir("run") / "qemu").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                qemus.append(int(pid_file.read_text().strip()))
        for group in (qemus, [self._pid("libvirtd")], [self._pid("virtlogd")]):
            _terminate([pid for pid in group if pid], timeout)

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for path in (self.log_path, self._dir("log") / "libvirtd.log"):
            if path.exists():
                parts.append(f"--- {path}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


def _terminate(pids: list[int], timeout: float) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``timeout``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _alive(pid)]
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child: reap it
                return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = (
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
    )
    return state not in ("Z", "X")


CACHE_ROOT = Path("/var/tmp/cloud-libvirt-cache")  # noqa: S108 - made 0700 and checked to be ours


def default_cache_dir(address: str) -> Path:
    """Where the capability cache of the host at ``address`` is kept between runs (it outlives a test's
    temporary directory). /var/tmp is everyone's, so the directory must be this user's and closed to others:
    a planted cache would tell libvirtd what QEMU can do."""
    CACHE_ROOT.mkdir(mode=0o700, exist_ok=True)
    status = CACHE_ROOT.lstat()
    if CACHE_ROOT.is_symlink() or status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise HostError(f"{CACHE_ROOT} is not a directory of this user's closed to others; remove it")
    return CACHE_ROOT / str(ipaddress.ip_address(address))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("directory", type=Path)
    parser.add_argument("--address", default="127.0.0.21", help="the host's loopback address (127.0.0.N)")
    parser.add_argument("--cache-dir", type=Path, help="libvirt's cache (default /var/tmp/cloud-libvirt-cache/ADDR)")
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    host = LibvirtHost(args.directory, args.address, args.cache_dir or default_cache_dir(args.address))
    try:
        if args.action == "start":
            host.start()
            print(host.uri)
        else:
            host.stop()
    except HostError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
