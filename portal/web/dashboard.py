"""The dashboard: the project's instances by state, and its quota usage against its limits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal.auth.context import RequestContext
from portal.selectors import quotas as quota_selectors
from portal.selectors.instances import instances_visible
from portal.states import api_status

from .context import page, portal_view

# The order the dashboard lists states in; any other status follows.
_STATUS_ORDER = ["ACTIVE", "BUILD", "SHUTOFF", "PAUSED", "SUSPENDED", "REBOOT", "HARD_REBOOT", "ERROR"]


@dataclass(frozen=True)
class QuotaBar:
    resource: str
    label: str
    used: int
    limit: int  # -1 is unlimited
    unit: str = ""

    @property
    def unlimited(self) -> bool:
        return self.limit < 0

    @property
    def percent(self) -> int:
        if self.unlimited or self.limit == 0:
            return 0 if self.unlimited or self.used == 0 else 100
        return min(100, round(100 * self.used / self.limit))

    @property
    def level(self) -> str:
        return "full" if self.percent >= 100 else "high" if self.percent >= 80 else "ok"


def quota_bars(ctx: RequestContext) -> list[QuotaBar]:
    limits = quota_selectors.project_limits(ctx.project)
    used = quota_selectors.instance_usage(ctx.project)
    return [
        QuotaBar("instances", "Instances", used["instances"], limits["instances"]),
        QuotaBar("cores", "vCPUs", used["cores"], limits["cores"]),
        QuotaBar("ram", "RAM", used["ram"], limits["ram"], unit="MB"),
    ]


def summary(ctx: RequestContext) -> dict:
    counts = Counter(api_status(vm, task) for vm, task in instances_visible(ctx).values_list("vm_state", "task_state"))
    ordered = sorted(counts.items(), key=lambda item: (_rank(item[0]), item[0]))
    return {"states": ordered, "total": sum(counts.values()), "bars": quota_bars(ctx)}


def _rank(status: str) -> int:
    return _STATUS_ORDER.index(status) if status in _STATUS_ORDER else len(_STATUS_ORDER)


@require_GET
@portal_view
def dashboard(request: HttpRequest) -> HttpResponse:
    return page(request, "portal/dashboard.html", {"section": "dashboard", **summary(request.ctx)})


@require_GET
@portal_view
def dashboard_summary(request: HttpRequest) -> HttpResponse:
    """The dashboard's figures alone, fetched again when an instance changes."""
    return render(request, "portal/_dashboard_summary.html", summary(request.ctx))
