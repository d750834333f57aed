"""Why the scheduler kept or removed hosts, as data and as one sentence for an operator or a fault."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NO_VALID_HOST = "No valid host was found."


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
    """

    total_hosts: int
    steps: tuple[FilterStep, ...] = ()
    remaining: int = 0
    # For one instance of a multi-create: its position (from 0) and the size of the batch.
    instance_index: int = 0
    batch_size: int = 1

    @property
    def no_valid_host(self) -> bool:
        return self.remaining == 0

    def render(self) -> str:
        """E.g. ``10 hosts: ComputeFilter removed 2 (down), RamFilter removed 7 (not enough RAM), 1 left``."""
        if self.total_hosts == 0:
            return f"{NO_VALID_HOST} There are no compute hosts."
        removals = [step.render() for step in self.steps if step.removed]
        if self.remaining:
            parts = [*removals, f"{self.remaining} left"] if removals else [f"none removed, {self.remaining} left"]
            return f"{_hosts(self.total_hosts)}: {', '.join(parts)}"
        if self.batch_size > 1:
            return (
                f"No valid host was found for instance {self.instance_index + 1} of {self.batch_size} "
                f"({self.instance_index} placed before it). {_hosts(self.total_hosts)}: {', '.join(removals)}"
            )
        return f"{NO_VALID_HOST} {_hosts(self.total_hosts)}: {', '.join(removals)}"

    __str__ = render

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form for logs and the admin."""
        return {
            "total_hosts": self.total_hosts,
            "remaining": self.remaining,
            "instance_index": self.instance_index,
            "batch_size": self.batch_size,
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
