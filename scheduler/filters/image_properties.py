"""The image's requirements on the host: architecture, hypervisor type and version, VM mode."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.filters.base import BaseHostFilter
from scheduler.types import FilterContext, HostState, RequestSpec

# Image property names, each with the older spelling images still carry.
ARCH_KEYS = ("hw_architecture", "architecture")
HV_TYPE_KEYS = ("img_hv_type", "hypervisor_type")
HV_VERSION_KEYS = ("img_hv_requested_version", "hypervisor_version_requires")
VM_MODE_KEYS = ("hw_vm_mode", "vm_mode")

_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "x86-64": "x86_64",
    "i386": "i686",
    "i486": "i686",
    "i586": "i686",
    "x86": "i686",
    "ia32": "i686",
    "arm64": "aarch64",
    "armv8": "aarch64",
    "arm": "armv7l",
    "armv7": "armv7l",
}
# Every host of this cloud runs full hardware virtualisation guests.
HOST_VM_MODES = frozenset({"hvm"})
_VM_MODE_ALIASES = {"hv": "hvm", "baremetal": "hvm"}
_PREDICATE = re.compile(r"^\s*(>=|<=|==|!=|>|<)?\s*([0-9]+(?:\.[0-9]+)*)\s*$")


def canonical_arch(value: str) -> str:
    name = value.strip().lower()
    return _ARCH_ALIASES.get(name, name)


def libvirt_version_tuple(version: int) -> tuple[int, int, int]:
    """libvirt's version number (major * 1,000,000 + minor * 1,000 + release) as a tuple."""
    return version // 1_000_000, version // 1_000 % 1_000, version % 1_000


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = [int(part) for part in text.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def version_satisfies(version: tuple[int, ...], requirement: str) -> bool:
    """``requirement`` is comma-separated predicates such as ``>=6.0, <9``; a bare version means ``==``.

    An unreadable requirement is never satisfied, so a typo keeps an image off hosts rather than on
    the wrong ones.
    """
    clauses = [clause for clause in requirement.split(",") if clause.strip()]
    if not clauses:
        return False
    for clause in clauses:
        match = _PREDICATE.match(clause)
        if match is None:
            return False
        op, wanted = match.group(1) or "==", _version_tuple(match.group(2))
        ok = {
            ">=": version >= wanted,
            "<=": version <= wanted,
            ">": version > wanted,
            "<": version < wanted,
            "==": version == wanted,
            "!=": version != wanted,
        }[op]
        if not ok:
            return False
    return True


def _first(properties: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = properties.get(key)
        if value not in (None, ""):
            return str(value)
    return None


class ImagePropertiesFilter(BaseHostFilter):
    """Passes hosts that can run the image: matching ``hw_architecture``, ``img_hv_type``,
    ``img_hv_requested_version`` (against the host's libvirt version) and ``hw_vm_mode``.

    An image that states none of them runs anywhere; a host that never reported what it is fails an
    image that states any.
    """

    name = "ImagePropertiesFilter"
    reason = "cannot run the image"
    detailed_reasons = True

    def applies(self, spec: RequestSpec, ctx: FilterContext) -> bool:
        props = spec.image_properties
        return any(_first(props, keys) is not None for keys in (ARCH_KEYS, HV_TYPE_KEYS, HV_VERSION_KEYS, VM_MODE_KEYS))

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        return self._problem(host, spec) is None

    _last: tuple[RequestSpec, dict[tuple[str, str, int], str | None]] | None = None

    def rejection_reason(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> str:
        if self._last is not None and self._last[0] is spec:
            key = (host.cpu_arch, host.hypervisor_type, host.hypervisor_version)
            if key in self._last[1]:
                return self._last[1][key] or self.reason
        return self._problem(host, spec) or self.reason

    @staticmethod
    def _problem(host: HostState, spec: RequestSpec) -> str | None:
        props = spec.image_properties
        arch = _first(props, ARCH_KEYS)
        if arch is not None and canonical_arch(arch) != canonical_arch(host.cpu_arch):
            return "other architecture"
        hv_type = _first(props, HV_TYPE_KEYS)
        if hv_type is not None and hv_type.strip().lower() != host.hypervisor_type.strip().lower():
            return "other hypervisor type"
        vm_mode = _first(props, VM_MODE_KEYS)
        if vm_mode is not None:
            mode = vm_mode.strip().lower()
            if _VM_MODE_ALIASES.get(mode, mode) not in HOST_VM_MODES:
                return "unsupported VM mode"
        wanted_version = _first(props, HV_VERSION_KEYS)
        if wanted_version is not None and not (
            host.hypervisor_version
            and version_satisfies(libvirt_version_tuple(host.hypervisor_version), wanted_version)
        ):
            return "hypervisor version"
        return None

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        # The answer depends on three fields of the host only, and a fleet has few distinct combinations
        # of them: judge each combination once (and keep the verdicts for ``rejection_reason``).
        problems: dict[tuple[str, str, int], str | None] = {}
        self._last = (spec, problems)
        kept = []
        for host in hosts:
            key = (host.cpu_arch, host.hypervisor_type, host.hypervisor_version)
            if key in problems:
                problem = problems[key]
            else:
                problem = problems[key] = self._problem(host, spec)
            if problem is None:
                kept.append(host)
        return kept
