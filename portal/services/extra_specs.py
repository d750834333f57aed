"""What a flavor's extra specs may say: the keys the compute API knows, and the values each accepts.

An extra spec the hypervisor or the scheduler reads (``hw:cpu_policy``, ``hw:mem_page_size``,
``hw:numa_nodes``, ``hw_rng:allowed``, ``quota:*``, ``trait*:``, ``resources*:``, …) is checked against
its rule whenever it is set, so a flavor cannot carry a value that would only fail later at boot.
Keys outside the known namespaces are free-form. With ``strict`` (microversion 2.86 and later) an
unknown key inside a known namespace (``hw:no_such_thing``) is refused too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class InvalidExtraSpec(ValueError):
    """An extra spec with a value its key does not accept (the API answers 400 with the message)."""


_TRUE = {"1", "t", "true", "on", "y", "yes"}
_FALSE = {"0", "f", "false", "off", "n", "no"}
_CPU_MAP = r"\^?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"
_GROUP = r"([a-zA-Z0-9_-]{1,64})?"


@dataclass(frozen=True)
class SpecRule:
    """One known key (a regular expression over the whole name) and what its value must be."""

    key: str
    kind: str  # "bool" | "int" | "str"
    exact: str | None = None  # the key itself, when the rule is for one literal key
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    _key_re: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_key_re", re.compile(self.key))

    def matches(self, name: str) -> bool:
        return self._key_re.fullmatch(name) is not None

    def problem(self, name: str, value: str) -> str | None:
        if self.kind == "bool":
            if value.strip().lower() not in _TRUE | _FALSE:
                return f"'{value}' is not a valid boolean-like value for {name}."
        elif self.kind == "int":
            try:
                number = int(value)
            except ValueError:
                return f"'{value}' is not a valid integer value for {name}."
            if self.minimum is not None and number < self.minimum:
                return f"'{value}' is less than the min value of '{self.minimum}' for {name}."
            if self.maximum is not None and number > self.maximum:
                return f"'{value}' is greater than the max value of '{self.maximum}' for {name}."
        elif self.choices and value not in self.choices:
            return f"'{value}' is not one of: {', '.join(self.choices)} for {name}."
        elif self.pattern and re.fullmatch(self.pattern, value) is None:
            return f"'{value}' is not of the format '{self.pattern}' for {name}."
        return None


def _rules() -> list[SpecRule]:
    rules: list[SpecRule] = []

    def add(name: str, kind: str, **kwargs) -> None:
        rules.append(SpecRule(key=re.escape(name), kind=kind, exact=name, **kwargs))

    # hw: CPU, memory and NUMA placement (libvirt)
    add("hw:cpu_policy", "str", choices=("dedicated", "shared", "mixed"))
    add("hw:cpu_thread_policy", "str", choices=("prefer", "isolate", "require"))
    add("hw:emulator_threads_policy", "str", choices=("isolate", "share"))
    add("hw:cpu_realtime", "bool")
    add("hw:cpu_realtime_mask", "str", pattern=r"(\^)?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*")
    add("hw:cpu_dedicated_mask", "str", pattern=_CPU_MAP)
    add("hw:hide_hypervisor_id", "bool")
    add("hw:mem_page_size", "str", pattern=r"(large|small|any|\d+([kKMGT]i?)?(b|bit|B)?)")
    add("hw:locked_memory", "bool")
    add("hw:numa_nodes", "int", minimum=1)
    rules.append(SpecRule(key=r"hw:numa_cpus\.\d+", kind="str", pattern=_CPU_MAP))
    rules.append(SpecRule(key=r"hw:numa_mem\.\d+", kind="int", minimum=1))
    add("hw:pci_numa_affinity_policy", "str", choices=("required", "preferred", "legacy", "socket"))
    for topology in ("sockets", "cores", "threads"):
        add(f"hw:cpu_{topology}", "int", minimum=1)
        add(f"hw:cpu_max_{topology}", "int", minimum=1)
    # hw: devices and features
    add("hw:boot_menu", "bool")
    add("hw:vif_multiqueue_enabled", "bool")
    add("hw:mem_encryption", "bool")
    add("hw:mem_encryption_model", "str", choices=("amd-sev", "amd-sev-es", "amd-sev-snp"))
    add("hw:pmem", "str", pattern=r"([a-zA-Z0-9_]+(,)?)+")
    add("hw:pmu", "bool")
    add("hw:serial_port_count", "int", minimum=0)
    add("hw:tpm_model", "str", choices=("tpm-tis", "tpm-crb"))
    add("hw:tpm_version", "str", choices=("1.2", "2.0"))
    add("hw:tpm_secret_security", "str", choices=("user", "host", "deployment"))
    add("hw:watchdog_action", "str", choices=("none", "pause", "poweroff", "reset", "disabled"))
    add("hw:viommu_model", "str", choices=("intel", "smmuv3", "virtio", "auto"))
    add("hw:virtio_packed_ring", "bool")
    add("hw:sound_model", "str", choices=("sb16", "es1370", "pcspk", "ac97", "ich6", "ich9", "usb", "virtio"))
    add("hw:usb_model", "str", choices=("none", "nec-xhci", "qemu-xhci"))
    add("hw:redirected_usb_ports", "int", minimum=0, maximum=15)
    add("hw:ephemeral_encryption", "bool")
    add("hw:ephemeral_encryption_format", "str", choices=("plain", "luks", "luksv2"))
    # hw_rng:, hw_video:, os:
    add("hw_rng:allowed", "bool")
    add("hw_rng:rate_bytes", "int", minimum=0)
    add("hw_rng:rate_period", "int", minimum=0)
    add("hw_video:ram_max_mb", "int", minimum=0)
    add("os:secure_boot", "str", choices=("disabled", "required"))
    # quota: (libvirt tuning, and the VMware allocation knobs)
    add("quota:cpu_shares", "int", minimum=0)
    add("quota:cpu_period", "int", minimum=0)
    add("quota:cpu_quota", "int")
    for stat in ("read", "write", "total"):
        for metric in ("bytes", "iops"):
            add(f"quota:disk_{stat}_{metric}_sec", "int", minimum=0)
    for direction in ("inbound", "outbound"):
        for metric in ("average", "peak", "burst"):
            add(f"quota:vif_{direction}_{metric}", "int", minimum=0)
    for resource in ("cpu", "memory", "disk_io", "vif"):
        add(f"quota:{resource}_limit", "int", minimum=0)
        add(f"quota:{resource}_reservation", "int")
        add(f"quota:{resource}_shares_level", "str", choices=("custom", "high", "normal", "low"))
        add(f"quota:{resource}_shares_share", "int", minimum=0)
    # Placement: traits and resources, optionally in a numbered or named request group
    rules.append(SpecRule(key=rf"trait{_GROUP}:[A-Z][A-Z0-9_]*", kind="str", choices=("required", "forbidden")))
    standard = "|".join(STANDARD_RESOURCE_CLASSES)
    rules.append(SpecRule(key=rf"resources{_GROUP}:(?:{standard}|CUSTOM_[A-Z0-9_]+)", kind="int"))
    add("group_policy", "str", choices=("isolate", "none"))
    # Scheduler matching: any value, since they may carry operators (``>= 4``, ``<in> avx``)
    rules.append(SpecRule(key=r"aggregate_instance_extra_specs:.+", kind="str"))
    for capability in CAPABILITIES:
        add(f"capabilities:{capability}", "str")
    rules.append(SpecRule(key=r"capabilities:(cpu_info|metrics|stats|numa_topology|pci_device_pools):.+", kind="str"))
    add("accel:device_profile", "str")
    add("pci_passthrough:alias", "str", pattern=r"[^:]+:\d+(?:\s*,\s*[^:]+:\d+)*")
    add("vmware:hw_version", "str")
    add("vmware:storage_policy", "str")
    return rules


STANDARD_RESOURCE_CLASSES = (
    "VCPU",
    "MEMORY_MB",
    "DISK_GB",
    "PCI_DEVICE",
    "SRIOV_NET_VF",
    "NUMA_SOCKET",
    "NUMA_CORE",
    "NUMA_THREAD",
    "NUMA_MEMORY_MB",
    "IPV4_ADDRESS",
    "VGPU",
    "VGPU_DISPLAY_HEAD",
    "NET_BW_EGR_KILOBIT_PER_SEC",
    "NET_BW_IGR_KILOBIT_PER_SEC",
    "PCPU",
    "MEM_ENCRYPTION_CONTEXT",
    "FPGA",
    "PGPU",
    "NET_PACKET_RATE_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC",
)

CAPABILITIES = (
    "id",
    "uuid",
    "service_id",
    "host",
    "vcpus",
    "memory_mb",
    "local_gb",
    "vcpus_used",
    "memory_mb_used",
    "local_gb_used",
    "hypervisor_type",
    "hypervisor_version",
    "hypervisor_hostname",
    "free_ram_mb",
    "free_disk_gb",
    "current_workload",
    "running_vms",
    "disk_available_least",
    "host_ip",
    "mapped",
    "cpu_allocation_ratio",
    "ram_allocation_ratio",
    "disk_allocation_ratio",
    "total_usable_ram_mb",
    "total_usable_disk_gb",
    "disk_mb_used",
    "free_disk_mb",
    "vcpus_total",
    "num_instances",
    "num_io_ops",
    "failed_builds",
    "aggregates",
    "cell_uuid",
    "updated",
)

RULES = _rules()
_EXACT = {rule.exact: rule for rule in RULES if rule.exact}
_PATTERNS = [rule for rule in RULES if not rule.exact]
# A key whose part before the first colon matches one of these is in a namespace the API knows.
NAMESPACES = tuple(
    re.compile(pattern)
    for pattern in (
        r"hw",
        r"hw_rng",
        r"hw_video",
        r"os",
        r"quota",
        rf"trait{_GROUP}",
        rf"resources{_GROUP}",
        r"aggregate_instance_extra_specs",
        r"capabilities",
        r"accel",
        r"pci_passthrough",
        r"vmware",
    )
)


def rule_for(name: str) -> SpecRule | None:
    rule = _EXACT.get(name)
    if rule is not None:
        return rule
    return next((r for r in _PATTERNS if r.matches(name)), None)


def in_known_namespace(name: str) -> bool:
    if ":" not in name:
        return False
    prefix = name.split(":", 1)[0]
    return any(namespace.fullmatch(prefix) for namespace in NAMESPACES)


def extra_spec_problem(name: str, value: str, *, strict: bool = False) -> str | None:
    """Why ``name=value`` cannot be set, or None when it can."""
    rule = rule_for(name)
    if rule is not None:
        return rule.problem(name, value)
    if strict and in_known_namespace(name):
        return f"extra spec '{name}' does not appear to be a valid extra spec."
    return None


def extra_specs_validate(specs: Mapping[str, str] | Iterable[tuple[str, str]], *, strict: bool = False) -> None:
    """Raise InvalidExtraSpec naming the first spec that cannot be set."""
    items = specs.items() if isinstance(specs, Mapping) else specs
    for name, value in items:
        problem = extra_spec_problem(name, value, strict=strict)
        if problem:
            raise InvalidExtraSpec(f"Validation failed; {problem}")
