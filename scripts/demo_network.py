"""The demo's networks on this machine: the ``public`` bridge with an address here, the routes that keep
the demo's ranges from leaving the machine, and (with more than one host) each host's data plane in a
namespace of its own with an underlay between them.

What it makes, it removes on ``stop()``; ``start()`` first removes what an earlier run that died left, so
starting twice changes nothing. Everything is named ``demo-…`` or ``br-public`` (the operator's bridge of
physical network ``public``), and the state of what was added is kept in ``<state>/network.json``.

One host: its data plane runs in this machine's own namespace, its guests' taps go on ``br-public`` and its
nftables guard (the ``compute_dataplane`` tables) keeps guests off this machine's services. Hosts in
namespaces (``DEMO_HOSTS`` > 1, or ``DEMO_PUBLIC_MASQUERADE=1``): host N's data plane is in ``demo-hN``,
with a leg ``ul0`` on the underlay bridge (namespace ``demo-ul``; its tunnel address is 10.253.1.N) and a
bridge ``br-public`` of its own joined to this machine's ``br-public`` by a veth; the guard of this
machine's ``br-public`` is then the demo's own table ``inet demo_public``, with the same rules.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PHYSICAL_NETWORK = "public"
# With masquerade, guests still reach nothing of these through the machine (its own networks among them).
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16")
DATAPLANE_TABLE = "compute_dataplane"


def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, input=input, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


@dataclass
class DemoNetwork:
    state_dir: Path
    hosts: list[str]
    public_cidr: str = "10.253.0.0/24"
    underlay_cidr: str = "10.253.1.0/24"
    guard_range: str = "10.253.0.0/16"  # unreachable: every demo address not on one of its bridges
    tenant_cidr: str = "10.0.0.0/24"
    masquerade: bool = False
    namespaced: bool = False
    bridge: str = "br-public"  # this machine's leg on public, and each host's bridge of it
    prefix: str = "demo"  # of the namespaces, veths and the guard's table
    added: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.underlay_ns = f"{self.prefix}-ul"
        self.host_ns_prefix = f"{self.prefix}-h"
        self.guard_table = f"{self.prefix}_public"
        self.namespaced = self.namespaced or len(self.hosts) > 1 or self.masquerade
        public = ipaddress.IPv4Network(self.public_cidr)
        self.gateway = str(public.network_address + 1)
        self.prefixlen = public.prefixlen

    @property
    def _file(self) -> Path:
        return self.state_dir / "network.json"

    # --- start / stop -----------------------------------------------------------------------------------

    def start(self) -> dict[str, dict[str, str]]:
        """Make it all; return each host's data plane settings (``COMPUTE_*``)."""
        self.cleanup()
        self.added = {"routes": [], "namespaces": [], "links": [], "tables": [], "forwarding": None}
        self._save()
        for cidr in (self.guard_range, self.tenant_cidr):
            if self._needs_unreachable(cidr):
                run("ip", "route", "add", "unreachable", cidr)
                self.added["routes"].append(cidr)
                self._save()
        if self.bridge not in self._links(""):
            run("ip", "link", "add", self.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        self.added["links"].append(self.bridge)
        self._save()
        run("ip", "addr", "replace", f"{self.gateway}/{self.prefixlen}", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        settings = {name: self._host_settings(number, name) for number, name in enumerate(self.hosts, start=1)}
        if self.namespaced:
            self._guard()
        return settings

    def _host_settings(self, number: int, name: str) -> dict[str, str]:
        host_dir = self.state_dir / "compute" / name
        common = {
            "COMPUTE_DATAPLANE": "linux",
            "COMPUTE_PHYSICAL_NETWORKS": f"{PHYSICAL_NETWORK}:{self.bridge}",
            "COMPUTE_STATE_DIR": str(host_dir),
        }
        namespace = f"{self.host_ns_prefix}{number}" if self.namespaced else ""
        (host_dir / "network").mkdir(parents=True, exist_ok=True)
        (host_dir / "network" / "namespace").write_text(namespace + "\n")
        if not self.namespaced:
            # This machine's namespace. One host has no VXLAN peers: its tunnels end on loopback.
            return {**common, "COMPUTE_TUNNEL_ADDRESS": "127.0.0.1"}
        if self.underlay_ns not in self._namespaces():
            run("ip", "netns", "add", self.underlay_ns)
            self.added["namespaces"].append(self.underlay_ns)
            run("ip", "-n", self.underlay_ns, "link", "add", "ul0", "type", "bridge")
            run("ip", "-n", self.underlay_ns, "link", "set", "ul0", "up")
        address = str(ipaddress.IPv4Network(self.underlay_cidr).network_address + number)
        run("ip", "netns", "add", namespace)
        self.added["namespaces"].append(namespace)
        self._save()
        run("ip", "-n", namespace, "link", "set", "lo", "up")
        # The underlay leg: the host's tunnel address.
        run("ip", "-n", self.underlay_ns, "link", "add", f"ul-h{number}", "type", "veth", "peer", "name", "ul0",
            "netns", namespace)  # fmt: skip
        run("ip", "-n", self.underlay_ns, "link", "set", f"ul-h{number}", "master", "ul0", "up")
        run("ip", "-n", namespace, "addr", "add", f"{address}/{ipaddress.IPv4Network(self.underlay_cidr).prefixlen}",
            "dev", "ul0")  # fmt: skip
        run("ip", "-n", namespace, "link", "set", "ul0", "up")
        # The host's own br-public, joined to this machine's by a veth: public spans every host.
        outer = f"{self.prefix}-pub{number}"
        run("ip", "link", "add", outer, "type", "veth", "peer", "name", "pub0", "netns", namespace)
        self.added["links"].append(outer)
        self._save()
        run("ip", "link", "set", outer, "master", self.bridge, "up")
        run("ip", "-n", namespace, "link", "add", self.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        run("ip", "-n", namespace, "link", "set", "pub0", "master", self.bridge, "up")
        run("ip", "-n", namespace, "link", "set", self.bridge, "up")
        return {
            **common,
            "COMPUTE_NETWORK_NAMESPACE": namespace,
            "COMPUTE_TUNNEL_ADDRESS": address,
            "COMPUTE_NETWORK_CHECK_INTERVAL": "5",
        }

    def _guard(self) -> None:
        """This machine's br-public, when no data plane runs in this namespace: guests reach nothing here
        (replies to what the machine opened pass) and nothing is routed for them unless masquerading."""
        rules = [
            f"table inet {self.guard_table} {{",
            "  chain input {",
            "    type filter hook input priority filter; policy accept;",
            f'    iifname "{self.bridge}" ct state established,related accept',
            f'    iifname "{self.bridge}" drop',
            "  }",
            "  chain forward {",
            "    type filter hook forward priority filter; policy accept;",
            f'    iifname "{self.bridge}" oifname "{self.bridge}" accept',
        ]
        if self.masquerade:
            rules += [
                f'    oifname "{self.bridge}" ct state established,related accept',
                f'    oifname "{self.bridge}" drop',
                f'    iifname "{self.bridge}" ip daddr {{ {", ".join(PRIVATE_RANGES)} }} drop',
                f'    iifname "{self.bridge}" ip saddr {self.public_cidr} accept',
                f'    iifname "{self.bridge}" drop',
            ]
        else:
            rules += [f'    iifname "{self.bridge}" drop', f'    oifname "{self.bridge}" drop']
        rules += ["  }"]
        if self.masquerade:
            rules += [
                "  chain postrouting {",
                "    type nat hook postrouting priority srcnat; policy accept;",
                f'    ip saddr {self.public_cidr} oifname != "{self.bridge}" masquerade',
                "  }",
            ]
        rules += ["}"]
        self.added["tables"].append(f"inet {self.guard_table}")
        self._save()
        run("nft", "-f", "-", input="\n".join(rules) + "\n")
        if self.masquerade:
            self.added["forwarding"] = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
            self._save()
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")

    def stop(self) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Remove what this demo (or an earlier run of it) added, and what its hosts' data planes made."""
        try:
            added = json.loads(self._file.read_text())
        except (OSError, ValueError):
            added = {}
        for state in sorted((self.state_dir / "compute").glob("*/network/state.json")):
            self._dataplane_leftovers(state)
        if added.get("forwarding") is not None:
            with contextlib.suppress(OSError):
                Path("/proc/sys/net/ipv4/ip_forward").write_text(added["forwarding"] + "\n")
        for table in added.get("tables", []):
            run("nft", "delete", "table", *table.split(), check=False)
        namespaces = set(added.get("namespaces", [])) | {
            n for n in self._namespaces() if n == self.underlay_ns or n.startswith(self.host_ns_prefix)
        }
        for namespace in sorted(namespaces):
            self._delete_namespace(namespace)
        links = self._links("")
        for link in added.get("links", []):
            if link in links:
                run("ip", "link", "del", link, check=False)
        for cidr in added.get("routes", []):
            run("ip", "route", "del", "unreachable", cidr, check=False)
        with contextlib.suppress(FileNotFoundError):
            self._file.unlink()

    def _dataplane_leftovers(self, state: Path) -> None:
        """A data plane tears nothing down when its worker stops (a restarted host keeps its guests'
        network): the demo does, from what the data plane's state says it made. Its plan stays, so the
        next start builds it all again."""
        try:
            data = json.loads(state.read_text())
        except (OSError, ValueError):
            return
        memory = data.get("memory", {})
        for namespace in [*memory.get("namespaces", {}), *memory.get("routers", {})]:
            self._delete_namespace(namespace)
        if not self._in_host_namespace(state):
            links = self._links("")
            for link in memory.get("links", []):
                if link in links:
                    run("ip", "link", "del", link, check=False)
            run("nft", "delete", "table", "inet", DATAPLANE_TABLE, check=False)
            run("nft", "delete", "table", "bridge", DATAPLANE_TABLE, check=False)
        host = state.parent.parent.name
        run_dir = Path("/run/compute-dataplane") / (self._host_namespace(state) or host)
        _stop_dnsmasq_under(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        # Forget what was made (it is gone) and what was applied, so the next start applies it all again.
        memory.pop("links", None)
        memory.pop("namespaces", None)
        memory.pop("routers", None)
        memory.pop("router_tables", None)
        memory.pop("router_floating", None)
        memory.pop("ruleset", None)
        memory.pop("listing", None)
        data["plugged"] = []
        data["memory"] = memory
        state.write_text(json.dumps(data, sort_keys=True))

    def _in_host_namespace(self, state: Path) -> bool:
        """Whether that data plane lived in a host namespace (deleting the namespace removes it all)."""
        return bool(self._host_namespace(state))

    @staticmethod
    def _host_namespace(state: Path) -> str:
        marker = state.parent / "namespace"
        return marker.read_text().strip() if marker.exists() else ""

    # --- what is there --------------------------------------------------------------------------------------

    def _needs_unreachable(self, cidr: str) -> bool:
        """A range no route of this machine covers but the default one (or an unreachable one of ours)."""
        routes = json.loads(run("ip", "-j", "route", "show", "match", cidr).stdout or "[]")
        return not any(r.get("dst") != "default" for r in routes)

    @staticmethod
    def _links(namespace: str) -> set[str]:
        args = ["ip", "-n", namespace] if namespace else ["ip"]
        return {link["ifname"] for link in json.loads(run(*args, "-j", "link", "show").stdout or "[]")}

    @staticmethod
    def _namespaces() -> set[str]:
        return {line.split(" ")[0] for line in run("ip", "netns", "list").stdout.splitlines() if line}

    @staticmethod
    def _delete_namespace(namespace: str) -> None:
        for pid in run("ip", "netns", "pids", namespace, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        run("ip", "netns", "del", namespace, check=False)

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._file.write_text(json.dumps(self.added, sort_keys=True))

    # --- the summary --------------------------------------------------------------------------------------

    def describe(self) -> str:
        where = "each host's data plane in its own namespace (demo-h1, …)" if self.namespaced else "this machine"
        lines = [
            f"  Networks      public  {self.public_cidr} (flat, shared; bridge {self.bridge} here is {self.gateway})",
            f"                demo-net {self.tenant_cidr} (VXLAN, the admin project's, behind demo-router)",
            f"                data plane: {where}; guests reach nothing on this machine",
            "                outside access: "
            + ("masquerade through this machine (DEMO_PUBLIC_MASQUERADE=1)" if self.masquerade else "none"),
        ]
        return "\n".join(lines) + "\n"


def _stop_dnsmasq_under(run_dir: Path) -> None:
    """The DHCP servers and metadata proxies a host's data plane started (their pid files are under its
    ``run_dir``), also one whose namespace is already gone."""
    marker = f"--pid-file={run_dir}/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        dnsmasq = words[0] == "dnsmasq" and any(a.startswith(marker) for a in words)
        # The metadata proxies (``--pid-file PATH`` under the same directory).
        proxy = "compute_tasks.metadata_proxy" in words[1:3] and any(a.startswith(f"{run_dir}/") for a in words)
        if dnsmasq or proxy:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), 15)
