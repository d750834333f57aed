"""``/os-simple-tenant-usage`` (hours from launch and termination times, flavor sizes) and
``/os-console-auth-tokens/{token}``."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from portal.models import ConsoleToken
from tests.factories import FlavorFactory, InstanceFactory

from .admin_helpers import BASE, ComputeHostFactory, allow_version, v

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


@pytest.fixture
def servers(member, stranger):
    """Member's project: one server running 10 hours inside the period, one still running since before it,
    one never launched; another project: one server."""
    small = FlavorFactory(name="small", vcpus=2, memory_mb=1024, root_gb=10, ephemeral_gb=5)
    done = InstanceFactory(
        project=member.project,
        user=member.user,
        flavor=small,
        name="done",
        ephemeral_gb=5,
        launched_at=at(2),
        terminated_at=at(12),
        vm_state="deleted",
    )
    running = InstanceFactory(
        project=member.project, user=member.user, flavor=small, name="running", ephemeral_gb=5, launched_at=at(-5)
    )
    InstanceFactory(project=member.project, user=member.user, flavor=small, name="never", vm_state="error")
    theirs = InstanceFactory(project=stranger.project, user=stranger.user, name="theirs", launched_at=at(0))
    return done, running, theirs


def usage(caller, path: str, start: float = 0, end: float = 24, version: str = "2.1", extra: str = ""):
    return caller.client.get(f"{BASE}{path}?start={fmt(at(start))}&end={fmt(at(end))}{extra}", **v(version))


def test_a_projects_usage(member, servers):
    done, running, _ = servers
    body = usage(member, f"/os-simple-tenant-usage/{member.project.pk}").json()["tenant_usage"]
    assert body["tenant_id"] == member.project.pk
    assert body["total_hours"] == pytest.approx(10 + 24)
    assert body["total_vcpus_usage"] == pytest.approx(2 * 34)
    assert body["total_memory_mb_usage"] == pytest.approx(1024 * 34)
    assert body["total_local_gb_usage"] == pytest.approx(15 * 34)
    assert (body["start"], body["stop"]) == ("2024-01-01T00:00:00.000000", "2024-01-02T00:00:00.000000")
    by_name = {s["name"]: s for s in body["server_usages"]}
    assert set(by_name) == {"done", "running"}
    assert by_name["done"] == {
        "instance_id": str(done.uuid),
        "name": "done",
        "tenant_id": member.project.pk,
        "flavor": "small",
        "hours": pytest.approx(10),
        "memory_mb": 1024,
        "local_gb": 15,
        "vcpus": 2,
        "started_at": "2024-01-01T02:00:00.000000",
        "ended_at": "2024-01-01T12:00:00.000000",
        "state": "terminated",
        "uptime": 36000,
    }
    assert by_name["running"]["state"] == "active" and by_name["running"]["ended_at"] is None
    assert by_name["running"]["uptime"] > 5 * 3600


def test_periods_clip_the_hours(member, servers):
    body = usage(member, f"/os-simple-tenant-usage/{member.project.pk}", start=10, end=11).json()["tenant_usage"]
    assert body["total_hours"] == pytest.approx(2)  # an hour of each server
    later = usage(member, f"/os-simple-tenant-usage/{member.project.pk}", start=13, end=14).json()["tenant_usage"]
    assert [s["name"] for s in later["server_usages"]] == ["running"]
    # The future is not charged: the end is capped at now.
    future = member.client.get(
        f"{BASE}/os-simple-tenant-usage/{member.project.pk}?start={fmt(timezone.now() - timedelta(hours=1))}"
        f"&end={fmt(timezone.now() + timedelta(days=30))}"
    ).json()["tenant_usage"]
    assert future["total_hours"] == pytest.approx(1, abs=0.01)


def test_every_projects_usage_is_for_admins(admin, member, servers):
    assert usage(member, "/os-simple-tenant-usage").status_code == 403
    listed = usage(admin, "/os-simple-tenant-usage").json()["tenant_usages"]
    assert len(listed) == 2 and all("server_usages" not in u for u in listed)
    detailed = usage(admin, "/os-simple-tenant-usage", extra="&detailed=1").json()["tenant_usages"]
    assert sorted(len(u["server_usages"]) for u in detailed) == [1, 2]
    theirs = usage(admin, f"/os-simple-tenant-usage/{servers[2].project_id}").json()["tenant_usage"]
    assert theirs["total_hours"] == pytest.approx(24)


def test_another_projects_usage_is_forbidden_and_an_idle_project_has_none(member, stranger, servers):
    assert usage(member, f"/os-simple-tenant-usage/{stranger.project.pk}").status_code == 403
    assert usage(member, f"/os-simple-tenant-usage/{member.project.pk}", start=-100, end=-50).json() == {
        "tenant_usage": {}
    }


def test_bad_periods_are_400(member, servers):
    path = f"{BASE}/os-simple-tenant-usage/{member.project.pk}"
    backwards = member.client.get(f"{path}?start={fmt(at(5))}&end={fmt(at(1))}")
    assert backwards.status_code == 400
    assert "start time cannot occur after the end time" in backwards.json()["badRequest"]["message"]
    assert member.client.get(f"{path}?start=yesterday").status_code == 400
    ok = member.client.get(f"{path}?start=2024-01-01T00:00:00.000000&end=2024-01-01 12:00:00.000000")
    assert ok.status_code == 200


def test_paging_over_servers_from_2_40(admin, servers):
    done, running, theirs = servers
    first = usage(admin, "/os-simple-tenant-usage", version="2.40", extra="&detailed=1&limit=2").json()
    paged = [s["instance_id"] for u in first["tenant_usages"] for s in u["server_usages"]]
    assert paged == [str(done.uuid), str(running.uuid)]
    next_href = first["tenant_usages_links"][0]["href"]
    assert f"marker={running.uuid}" in next_href
    rest = usage(
        admin, "/os-simple-tenant-usage", version="2.40", extra=f"&detailed=1&limit=2&marker={running.uuid}"
    ).json()
    assert [s["instance_id"] for u in rest["tenant_usages"] for s in u["server_usages"]] == [str(theirs.uuid)]
    assert "tenant_usages_links" not in rest
    assert usage(admin, "/os-simple-tenant-usage", version="2.40", extra="&marker=nope").status_code == 400
    # Before 2.40 limit means nothing.
    everything = usage(admin, "/os-simple-tenant-usage", version="2.39", extra="&detailed=1&limit=1").json()
    assert sum(len(u["server_usages"]) for u in everything["tenant_usages"]) == 3


def test_unknown_query_parameters_are_400_from_2_75(member, servers, monkeypatch):
    allow_version(monkeypatch, "2.75")
    path = f"/os-simple-tenant-usage/{member.project.pk}"
    assert usage(member, path, version="2.75", extra="&detailed=1").status_code == 400
    assert usage(member, path, version="2.74", extra="&detailed=1").status_code == 200


def test_usage_queries_do_not_grow(admin, member, servers, django_assert_max_num_queries):
    with django_assert_max_num_queries(8) as few:
        usage(admin, "/os-simple-tenant-usage", extra="&detailed=1")
    baseline = len(few.captured_queries)
    for n in range(15):
        InstanceFactory(project=member.project, user=member.user, name=f"x{n}", launched_at=at(1))
    with django_assert_max_num_queries(baseline):
        usage(admin, "/os-simple-tenant-usage", extra="&detailed=1")


# --- console auth tokens -----------------------------------------------------------------------------


@pytest.fixture
def console_token(member):
    host = ComputeHostFactory(name="node1")
    instance = InstanceFactory(project=member.project, user=member.user, host=host, vnc_host="10.0.0.5", vnc_port=5901)
    token = "tok-" + "a" * 40
    ConsoleToken.objects.create(
        token_hash=ConsoleToken.hash(token),
        instance=instance,
        user=member.user,
        expires_at=timezone.now() + timedelta(minutes=10),
    )
    return token, instance


def test_admins_look_up_where_a_console_token_leads(admin, member, console_token):
    token, instance = console_token
    found = admin.client.get(f"{BASE}/os-console-auth-tokens/{token}", **v("2.31"))
    assert found.status_code == 200
    assert found.json() == {
        "console": {"instance_uuid": str(instance.uuid), "host": "10.0.0.5", "port": 5901, "internal_access_path": None}
    }
    assert member.client.get(f"{BASE}/os-console-auth-tokens/{token}", **v("2.31")).status_code == 403
    assert admin.client.get(f"{BASE}/os-console-auth-tokens/{token}", **v("2.30")).status_code == 400
    unknown = admin.client.get(f"{BASE}/os-console-auth-tokens/nope", **v("2.31"))
    assert unknown.status_code == 404
    assert unknown.json()["itemNotFound"]["message"] == "Token not found"


def test_expired_tokens_and_stopped_servers_lead_nowhere(admin, console_token):
    token, instance = console_token
    ConsoleToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert admin.client.get(f"{BASE}/os-console-auth-tokens/{token}", **v("2.31")).status_code == 404
    ConsoleToken.objects.update(expires_at=timezone.now() + timedelta(minutes=5))
    assert admin.client.get(f"{BASE}/os-console-auth-tokens/{token}", **v("2.31")).status_code == 200
    type(instance).objects.filter(pk=instance.pk).update(vm_state="stopped")
    assert admin.client.get(f"{BASE}/os-console-auth-tokens/{token}", **v("2.31")).status_code == 404
