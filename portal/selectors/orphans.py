"""Domains found on compute hosts that no instance of the cloud accounts for, as their last heartbeats
reported them."""

from __future__ import annotations

from portal.models import ComputeHost


def orphan_domains(*, host: str | None = None) -> list[dict]:
    rows = ComputeHost.objects.order_by("name").values("name", "orphan_domains", "last_heartbeat")
    if host is not None:
        rows = rows.filter(name=host)
    return [
        {"host": row["name"], "domain": domain, "reported_at": row["last_heartbeat"]}
        for row in rows
        for domain in sorted(row["orphan_domains"] or [])
    ]
