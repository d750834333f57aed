"""``/os-instance_usage_audit_log``: the compute API's answers with no usage audit running: every compute
host "not run" for the last whole month before the timestamp; admins only; a bad timestamp 400."""

from datetime import datetime
from urllib.parse import quote

import pytest
from django.utils import timezone

from portal.api.compute.usage_audit_log import last_completed_month

from .admin_helpers import BASE, ComputeHostFactory, v

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("before", "begin", "end"),
    [
        ("2026-12-06 04:00:00", "2026-11-01 00:00:00", "2026-12-01 00:00:00"),
        # At the very start of a month, the month just ended does not count as completed yet.
        ("2026-12-01 00:00:00", "2026-10-01 00:00:00", "2026-11-01 00:00:00"),
        ("2026-12-01 00:00:00.000001", "2026-11-01 00:00:00", "2026-12-01 00:00:00"),
        ("2026-01-20 10:00:00", "2025-12-01 00:00:00", "2026-01-01 00:00:00"),
        ("2026-02-01 00:00:00", "2025-12-01 00:00:00", "2026-01-01 00:00:00"),
    ],
)
def test_period_before_a_timestamp(admin, before, begin, end):
    ComputeHostFactory(name="b-host")
    ComputeHostFactory(name="a-host", enabled=False)
    response = admin.client.get(f"{BASE}/os-instance_usage_audit_log/{quote(before)}")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "instance_usage_audit_log": {
            "period_beginning": begin,
            "period_ending": end,
            "num_hosts": 2,
            "num_hosts_done": 0,
            "num_hosts_running": 0,
            "num_hosts_not_run": 2,
            "hosts_not_run": ["a-host", "b-host"],
            "total_instances": 0,
            "total_errors": 0,
            "overall_status": "0 of 2 hosts done. 0 errors.",
            "log": {},
        }
    }


@pytest.mark.parametrize("version", ["2.1", "2.104"])
def test_list_is_the_last_month_before_now(admin, version):
    response = admin.client.get(f"{BASE}/os-instance_usage_audit_log", **v(version))
    assert response.status_code == 200
    log = response.json()["instance_usage_audit_logs"]
    begin, end = last_completed_month(timezone.now().replace(tzinfo=None))
    assert (log["period_beginning"], log["period_ending"]) == (str(begin), str(end))
    assert log["num_hosts"] == 0 and log["hosts_not_run"] == [] and log["log"] == {}
    assert log["overall_status"] == "ALL hosts done. 0 errors."


def test_month_arithmetic():
    assert last_completed_month(datetime(2026, 3, 31, 23, 59)) == (datetime(2026, 2, 1), datetime(2026, 3, 1))


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01 00:00:00", "2026-01-01", "2026-01-01 00:00:00.x"])
def test_bad_timestamp_is_400(admin, bad):
    response = admin.client.get(f"{BASE}/os-instance_usage_audit_log/{quote(bad)}")
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"] == f"Invalid timestamp for date {bad}"


def test_the_first_month_there_is_has_no_month_before_it(admin):
    response = admin.client.get(f"{BASE}/os-instance_usage_audit_log/{quote('0001-01-15 00:00:00')}")
    assert response.status_code == 400


def test_admins_only(member, reader):
    for caller in (member, reader):
        assert caller.client.get(f"{BASE}/os-instance_usage_audit_log").status_code == 403
        path = f"{BASE}/os-instance_usage_audit_log/{quote('2026-01-01 00:00:00')}"
        assert caller.client.get(path).status_code == 403
