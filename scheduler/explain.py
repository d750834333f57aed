"""Why the scheduler kept or removed hosts, as data and as one sentence for an operator or a fault."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NO_VALID_HOST = "No valid host was found."
# The step that keeps only the host a request named (``RequestSpec.requested_host``).
REQUESTED_HOST_STEP = "requested_host"
REQUESTED_HOST_REASON = "not the requested host"


def _hosts(count: int) -> str:
    return f"{count} host" if count == 1 else f"{count} hosts"


@dataclass(frozen=True, slots=True)
class FilterStep:
    """One step of the pipeline: how many hosts it saw, and how many it removed for which reason.

    ``reasons`` pairs a short reason ("down", "not enough RAM") with a count, most frequent first;
    the counts add up to ``removed``.
    """

    name: str
    hosts_before: int
    removed: int
    reasons: tuple[tuple[str, int], ...] = ()

    def render(self) -> str:
        if len(self.reasons) == 1:
            why = self.reasons[0][0]
        else:
            why = ", ".join(f"{count} {reason}" for reason, count in self.reasons)
        return f"{self.name} removed {self.removed} ({why})" if why else f"{self.name} removed {self.removed}"


@dataclass(frozen=True, slots=True)
class Explanation:
    """The record of one decision, in the order the steps ran.

    Steps that removed nothing are kept in ``steps`` (so ``as_dict`` shows every filter that ran) but
    left out of the sentence. Once no host is left, later filters do not run and have no step.

    ``requested_host`` is the host the request named, if any (``forced_host`` when it was forced and
    most filters were bypassed); the sentence then speaks of that host alone.
    """

    total_hosts: int
    steps: tuple[FilterStep, ...] = ()
    remaining: int = 0
    # For one instance of a multi-create: its position (from 0) and the size of the batch.
    instance_index: int = 0
    batch_size: int = 1
    requested_host: str | None = None
    forced_host: bool = False

    @property
    def no_valid_host(self) -> bool:
        return self.remaining == 0

    def render(self) -> str:
        """E.g. ``10 hosts: ComputeFilter removed 2 (down), RamFilter removed 7 (not enough RAM), 1 left``."""
        if self.requested_host is not None:
            return self._render_requested()
        if self.total_hosts == 0:
            return f"{NO_VALID_HOST} There are no compute hosts."
        removals = [step.render() for step in self.steps if step.removed]
        if self.remaining:
            parts = [*removals, f"{self.remaining} left"] if removals else [f"none removed, {self.remaining} left"]
            return f"{_hosts(self.total_hosts)}: {', '.join(parts)}"
        return f"{self._none_found()} {_hosts(self.total_hosts)}: {', '.join(removals)}"

    __str__ = render

    def _none_found(self) -> str:
        if self.batch_size > 1:
            return (
                f"No valid host was found for instance {self.instance_index + 1} of {self.batch_size} "
                f"({self.instance_index} placed before it)."
            )
        return NO_VALID_HOST

    def _render_requested(self) -> str:
        """E.g. ``No valid host was found. The request named host hv-1: RamFilter removed 1 (not enough RAM)``."""
        asked = f"The request {'forced' if self.forced_host else 'named'} host {self.requested_host}"
        if self.remaining:
            if self.forced_host:
                return f"{asked}, which passes the filters a forced host does not bypass."
            return f"{asked}, which passes every filter."
        # The host-narrowing step runs first; when it left nothing (or there were no hosts), the host is unknown.
        known = self.total_hosts > 0 and not any(
            step.name == REQUESTED_HOST_STEP and step.removed == step.hosts_before for step in self.steps
        )
        if not known:
            return f"{self._none_found()} {asked}, which is not a compute host."
        removals = [step.render() for step in self.steps if step.removed and step.name != REQUESTED_HOST_STEP]
        return f"{self._none_found()} {asked}: {', '.join(removals)}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form for logs and the admin."""
        return {
            "total_hosts": self.total_hosts,
            "remaining": self.remaining,
            "instance_index": self.instance_index,
            "batch_size": self.batch_size,
            **(
                {"requested_host": self.requested_host, "forced_host": self.forced_host}
                if self.requested_host is not None
                else {}
            ),
            "steps": [
                {
                    "name": step.name,
                    "hosts_before": step.hosts_before,
                    "removed": step.removed,
                    "reasons": dict(step.reasons),
                }
                for step in self.steps
            ],
            "summary": self.render(),
        }
