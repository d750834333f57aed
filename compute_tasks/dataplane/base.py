"""What every data plane does with a plan: keep it, reconcile to it, and say what it found.

A host is sent its whole desired network (``HostNetworkPlan``), never a change. ``apply`` reconciles to
it and reports; the plan is kept in the host's state directory, so a restarted worker reconciles to it
again (``resume``); ``check`` runs every few seconds and reports only when it had to mend something or
the set of plugged ports changed; ``plug_instance`` is the cheap path after a guest (re)appears: only
that guest's devices are looked at.

A subclass implements ``_reconcile`` (the whole plan) and ``_plug`` (some ports). Both return the ports
whose devices are where they belong, and what they found wrong that the plan had not changed (drift).
Applying the same plan twice changes nothing and finds no drift.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_tasks.private_files import private_dir
from compute_tasks.rpc import HostNetworkPlan, NetworkStateApplied, PortPlan

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    plugged: set[str] = field(default_factory=set)  # port ids
    drift: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Dataplane:
    """The state kept between reconciliations, the lock, and the reporting rules."""

    kind = "base"

    def __init__(self, host: str, state_dir: Path, *, tunnel_address: str = "", physical_networks=()) -> None:
        self.host = host
        self.tunnel_address = tunnel_address
        self.physical_networks = sorted(dict(physical_networks))
        self._dir = Path(state_dir) / "network"
        self._lock = threading.RLock()
        self.plan: HostNetworkPlan | None = None
        self.plugged: set[str] = set()
        self.memory: dict[str, Any] = {}  # what a subclass keeps between runs (names it made, ...)
        # The taps of this host's running guests (the compute driver's ``port_devices``), when it can tell.
        self.local_devices: Callable[[], set[str] | None] | None = None
        # Asks a running guest to announce itself (the compute driver's ``announce``). A guest whose port
        # was just put on its bridge does, so that the switches beyond learn where it is: after a live
        # migration they still know it at the host it left, and its own announcement came before the
        # plan that has its port here.
        self.announce: Callable[[str], None] | None = None
        self._load()

    @property
    def generation(self) -> int:
        """The generation of the plan the host last applied (0: none yet)."""
        return self.plan.generation if self.plan is not None else 0

    # --- the entry points -------------------------------------------------------------------------------

    def apply(self, plan: HostNetworkPlan) -> NetworkStateApplied:
        # A plan is applied even when its generation is lower than the one applied: it was the control
        # plane's word when sent. Delivered late, its report and the heartbeat show the host behind, and
        # the control plane sends the current plan again; and a control plane whose generations started
        # over (a new database) is still obeyed.
        with self._lock:
            outcome = self._run(plan)
            self.plan = plan
            self._save()
            return self._report(outcome)

    def resume(self) -> NetworkStateApplied | None:
        """At start: reconcile to the plan kept from before, and report what that gives."""
        with self._lock:
            if self.plan is None:
                return None
            return self._report(self._run(self.plan))

    def check(self) -> NetworkStateApplied | None:
        """The periodic reconciliation: a report only when something was mended or ports changed."""
        with self._lock:
            if self.plan is None:
                return None
            before, errors_before = set(self.plugged), self.memory.get("errors", [])
            outcome = self._run(self.plan)
            # A problem that persists is reported once, not at every check.
            if outcome.drift or outcome.errors != errors_before or outcome.plugged != before:
                return self._report(outcome)
            return None

    def plug_instance(self, instance_uuid: str) -> NetworkStateApplied | None:
        """A guest was (re)started here: plug its ports now. A report when the plugged ports changed."""
        with self._lock:
            if self.plan is None:
                return None
            ports = [p for n in self.plan.networks for p in n.ports if p.instance_uuid == instance_uuid]
            if not ports:
                return None
            before = set(self.plugged)
            try:
                now = self._plug(self.plan, ports)
            except Exception as exc:  # the periodic check tries again
                log.warning("plugging the ports of instance %s failed: %s", instance_uuid, exc)
                return None
            mine = {p.port_id for p in ports}
            self.plugged = (before - mine) | (now & mine)
            self._save()
            self._announce(self.plan, self.plugged - before)
            if self.plugged != before:
                return self._report(Outcome(plugged=set(self.plugged)))
            return None

    # --- for subclasses ---------------------------------------------------------------------------------

    def _reconcile(self, plan: HostNetworkPlan, previous: HostNetworkPlan | None) -> Outcome:
        raise NotImplementedError

    def _plug(self, plan: HostNetworkPlan, ports: list[PortPlan]) -> set[str]:
        raise NotImplementedError

    # --- inside -------------------------------------------------------------------------------------------

    def _run(self, plan: HostNetworkPlan) -> Outcome:
        try:
            outcome = self._reconcile(plan, self.plan)
        except Exception as exc:
            log.exception("reconciling the data plane to plan %d failed", plan.generation)
            outcome = Outcome(plugged=set(self.plugged), errors=[f"{type(exc).__name__}: {exc}"])
        for line in outcome.drift:
            log.warning("data plane drift mended: %s", line)
        for line in outcome.errors:
            log.error("data plane: %s", line)
        newly_plugged = outcome.plugged - self.plugged
        self.plugged = set(outcome.plugged)
        self.memory["errors"] = list(outcome.errors)
        self._save()
        self._announce(plan, newly_plugged)
        return outcome

    def _announce(self, plan: HostNetworkPlan | None, port_ids: set[str]) -> None:
        if self.announce is None or plan is None or not port_ids:
            return
        guests = {p.instance_uuid for n in plan.networks for p in n.ports if p.port_id in port_ids and p.instance_uuid}
        for instance_uuid in sorted(guests):
            try:
                self.announce(instance_uuid)
            except Exception as exc:  # the guest's own traffic tells the switches in the end
                log.warning("instance %s could not announce itself: %s", instance_uuid, exc)

    def _report(self, outcome: Outcome) -> NetworkStateApplied:
        return NetworkStateApplied(
            host=self.host,
            generation=self.generation,
            plugged_ports=sorted(outcome.plugged),
            drift=list(outcome.drift),
            error="; ".join(outcome.errors)[:2000],
        )

    @property
    def _file(self) -> Path:
        return self._dir / "state.json"

    def _load(self) -> None:
        try:
            data = json.loads(self._file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("the kept network state %s cannot be read (%s); starting without it", self._file, exc)
            return
        plan = data.get("plan")
        self.plan = HostNetworkPlan.from_dict(plan) if isinstance(plan, dict) else None
        self.plugged = set(data.get("plugged", []))
        self.memory = dict(data.get("memory", {}))

    def _save(self) -> None:
        private_dir(self._dir)
        data = {
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "plugged": sorted(self.plugged),
            "memory": self.memory,
        }
        temporary = self._file.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, sort_keys=True)
        os.replace(temporary, self._file)


class NullDataplane(Dataplane):
    """Applies nothing and reports every planned port plugged, the routers' too: for the fake driver and
    libvirt's test driver, whose guests have no devices to plug."""

    kind = "none"

    def _reconcile(self, plan: HostNetworkPlan, previous: HostNetworkPlan | None) -> Outcome:
        legs = {leg.port_id for r in plan.routers for leg in [*r.interfaces, r.gateway] if leg is not None}
        return Outcome(plugged={p.port_id for n in plan.networks for p in n.ports} | legs)

    def _plug(self, plan: HostNetworkPlan, ports: list[PortPlan]) -> set[str]:
        return {p.port_id for p in ports}

    def _announce(self, plan: HostNetworkPlan | None, port_ids: set[str]) -> None:
        """Nothing was put on a wire: nothing to announce."""
