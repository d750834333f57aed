"""GET /servers and /servers/detail: filters, sorting, keyset pagination, and the queries they cost."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from portal.models import Instance, InstanceTag
from portal.states import TaskState, VmState
from tests.factories import FlavorFactory, InstanceFactory

from .helpers import BASE, booted, on_host, v

pytestmark = pytest.mark.integration


def listed(caller, query="", version="2.47", detail=False):
    response = caller.client.get(f"{BASE}/servers{'/detail' if detail else ''}?{query}", **v(version))
    assert response.status_code == 200, response.content
    return response.json()


def names(caller, query="", version="2.47"):
    return [s["name"] for s in listed(caller, query, version)["servers"]]


@pytest.fixture
def fleet(member, flavor, image):
    """Five servers of the member's project, created one after the other, in assorted states."""
    made = {}
    for name in ["alpha", "beta", "gamma", "delta", "web-1"]:
        made[name] = booted(member, flavor, image, name=name)
    on_host(made["alpha"])
    on_host(made["beta"], vm_state=VmState.PAUSED, power_state=3)
    on_host(made["gamma"], vm_state=VmState.STOPPED, task_state=TaskState.REBUILDING, power_state=4)
    on_host(made["delta"], vm_state=VmState.ACTIVE, task_state=TaskState.REBOOTING)
    return made


def test_name_is_a_regular_expression_applied_by_the_database(member, fleet):
    assert sorted(names(member, "name=^[ab]")) == ["alpha", "beta"]
    assert names(member, "name=a$") == ["delta", "gamma", "beta", "alpha"]
    assert names(member, "name=web-1") == ["web-1"]
    assert member.client.get(f"{BASE}/servers?name=(", **v("2.47")).status_code == 400


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("ACTIVE", ["alpha"]),
        ("PAUSED", ["beta"]),
        ("REBUILD", ["gamma"]),
        ("REBOOT", ["delta"]),
        ("BUILD", ["web-1"]),
        ("SHUTOFF", []),
        ("SHELVED", []),
        ("active", ["alpha"]),
    ],
)
def test_status_selects_what_the_status_field_shows(member, fleet, status, expected):
    assert names(member, f"status={status}") == expected
    for server in listed(member, f"status={status}", detail=True)["servers"]:
        assert server["status"] == status.upper()


def test_several_statuses_and_invalid_ones(member, fleet):
    assert sorted(names(member, "status=PAUSED&status=BUILD")) == ["beta", "web-1"]
    assert member.client.get(f"{BASE}/servers?status=BOGUS", **v("2.38")).status_code == 400
    assert names(member, "status=BOGUS", version="2.37") == []


def test_flavor_and_image_filters(member, fleet, flavor, image):
    other = FlavorFactory(flavorid="2", name="m1.small")
    Instance.objects.filter(pk=fleet["alpha"].pk).update(flavor=other)
    assert names(member, "flavor=2") == ["alpha"]
    assert len(names(member, "flavor=1")) == 4
    assert names(member, "flavor=nope") == []
    assert len(names(member, f"image={image.id}")) == 5
    assert len(names(member, f"image=http://x/images/{image.id}")) == 5
    assert names(member, "image=00000000-0000-0000-0000-000000000000") == []
    assert names(member, "image=junk") == []


def test_changes_since_includes_deleted_servers(member, fleet):
    cutoff = timezone.now()
    Instance.objects.exclude(name__in=["beta", "gamma"]).update(updated_at=cutoff - timedelta(hours=1))
    Instance.objects.filter(name="gamma").update(vm_state=VmState.DELETED, updated_at=cutoff + timedelta(seconds=1))
    Instance.objects.filter(name="beta").update(updated_at=cutoff + timedelta(seconds=2))
    since = (cutoff - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert sorted(names(member, f"changes-since={since}")) == ["beta", "gamma"]
    detail = listed(member, f"changes-since={since}&sort_key=display_name&sort_dir=asc", detail=True)["servers"]
    assert [(s["name"], s["status"]) for s in detail] == [("beta", "PAUSED"), ("gamma", "DELETED")]
    assert "gamma" not in names(member)
    assert member.client.get(f"{BASE}/servers?changes-since=yesterday", **v("2.47")).status_code == 400


def test_changes_before_from_2_66(member, fleet, server_microversions):
    cutoff = timezone.now()
    Instance.objects.filter(name="alpha").update(updated_at=cutoff - timedelta(hours=2))
    before = (cutoff - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert names(member, f"changes-before={before}", version="2.66") == ["alpha"]
    assert len(names(member, f"changes-before={before}", version="2.65")) == 5  # not a filter yet


def test_tag_filters(member, fleet, server_microversions):
    for name, tags in {"alpha": ["a", "b"], "beta": ["a"], "gamma": ["b", "c"], "delta": []}.items():
        InstanceTag.objects.bulk_create(InstanceTag(instance=fleet[name], tag=t) for t in tags)
    assert sorted(names(member, "tags=a,b", "2.26")) == ["alpha"]
    assert sorted(names(member, "tags=a&tags=b", "2.26")) == ["alpha"]
    assert sorted(names(member, "tags-any=a,c", "2.26")) == ["alpha", "beta", "gamma"]
    assert sorted(names(member, "not-tags=a,b", "2.26")) == ["beta", "delta", "gamma", "web-1"]
    assert sorted(names(member, "not-tags-any=a,c", "2.26")) == ["delta", "web-1"]
    assert sorted(names(member, "tags=b&not-tags-any=c", "2.26")) == ["alpha"]
    assert len(names(member, "tags=a", "2.25")) == 5  # before 2.26 tags are no filter


def test_ip_filter_is_a_regex_over_the_addresses(member, fleet):
    Instance.objects.filter(name="beta").update(addresses=[{"addr": "192.0.2.7", "version": 4, "mac": "x"}])
    assert names(member, r"ip=^192\.0\.2\.") == ["beta"]
    assert sorted(names(member, "ip=10.0.2")) == ["alpha", "delta", "gamma"]
    assert names(member, "ip6=.", version="2.5") == []


def test_locked_filter_from_2_73(member, fleet, server_microversions):
    Instance.objects.filter(name="beta").update(locked=True, locked_by="owner")
    assert names(member, "locked=true", "2.73") == ["beta"]
    assert len(names(member, "locked=false", "2.73")) == 4
    assert len(names(member, "locked=true", "2.72")) == 5


def test_all_tenants_is_for_admins(member, stranger, admin, fleet, flavor):
    assert member.client.get(f"{BASE}/servers?all_tenants=1", **v("2.47")).status_code == 403
    assert names(stranger) == []
    assert names(admin) == []
    assert len(names(admin, "all_tenants=1")) == 5
    assert len(names(admin, f"all_tenants=1&tenant_id={member.project.id}")) == 5
    assert names(admin, f"project_id={member.project.id}") == []  # without all_tenants, as Nova: ignored
    assert names(admin, f"all_tenants=1&project_id={stranger.project.id}") == []
    # Admin-only filters are ignored for others, as the compute API ignores them.
    assert names(admin, "all_tenants=1&host=hv1&vm_state=paused") == ["beta"]
    assert len(names(member, "host=nowhere")) == 5


SORTS = [
    "",
    "sort_key=display_name&sort_dir=asc",
    "sort_key=display_name&sort_dir=desc",
    "sort_key=task_state&sort_dir=asc&sort_key=display_name&sort_dir=desc",
    "sort_key=task_state&sort_dir=desc",
    "sort_key=launched_at&sort_dir=desc&sort_key=uuid&sort_dir=asc",
    "sort_key=vm_state&sort_key=created_at",
    "sort_key=access_ip_v4",
]


@pytest.mark.parametrize("sort", SORTS)
def test_pages_walk_the_sorted_list_without_gaps_or_repeats(member, fleet, sort):
    everything = [s["id"] for s in listed(member, sort)["servers"]]
    assert len(everything) == 5
    walked, query, pages = [], f"{sort}&limit=2", 0
    while True:
        body = listed(member, query)
        walked += [s["id"] for s in body["servers"]]
        pages += 1
        links = body.get("servers_links")
        if not links:
            break
        next_href = links[0]["href"]
        assert links[0]["rel"] == "next" and "/compute/v2.1/servers?" in next_href
        query = next_href.split("?", 1)[1]
    assert walked == everything
    assert pages == 3


def test_a_zero_limit_lists_nothing(member, fleet):
    for path in ("servers", "servers/detail"):
        body = member.client.get(f"{BASE}/{path}?limit=0", **v("2.47")).json()
        assert body == {"servers": []}, path


def test_sorting_orders_as_asked(member, fleet):
    assert names(member, "sort_key=display_name&sort_dir=asc") == ["alpha", "beta", "delta", "gamma", "web-1"]
    assert names(member) == ["web-1", "delta", "gamma", "beta", "alpha"]  # newest first by default
    # NULL task states sort as the smallest value.
    ordered = names(member, "sort_key=task_state&sort_dir=asc&sort_key=display_name&sort_dir=asc")
    assert ordered == ["alpha", "beta", "delta", "gamma", "web-1"]


def test_bad_sorting_and_paging_are_400(member, admin, fleet):
    for query in [
        "sort_key=nonsense",
        "sort_dir=sideways",
        "limit=-1",
        "limit=x",
        "marker=00000000-0000-0000-0000-000000000000",
        "marker=junk",
        "sort_key=display_name&sort_dir=asc&sort_dir=desc&sort_dir=asc",
    ]:
        assert member.client.get(f"{BASE}/servers?{query}", **v("2.47")).status_code == 400, query
    assert member.client.get(f"{BASE}/servers?sort_key=host", **v("2.47")).status_code == 403
    assert admin.client.get(f"{BASE}/servers?all_tenants=1&sort_key=host", **v("2.47")).status_code == 200


def test_a_marker_from_another_project_is_not_found(member, stranger, fleet):
    marker = fleet["alpha"].uuid
    assert stranger.client.get(f"{BASE}/servers?marker={marker}", **v("2.47")).status_code == 400


def detail_queries(caller, version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = caller.client.get(f"{BASE}/servers/detail?all_tenants=1&limit=100", **v(version))
        assert response.status_code == 200, response.content
    return len(captured.captured_queries), len(response.json()["servers"])


@pytest.mark.parametrize("version", ["2.1", "2.47", "2.75"])
def test_detail_list_queries_do_not_grow_with_the_servers(admin, member, flavor, image, server_microversions, version):
    first = on_host(booted(member, flavor, image))
    InstanceTag.objects.create(instance=first, tag="t")
    # One server in ERROR from the start: the faults of the servers that show one take one query.
    Instance.objects.filter(pk=first.pk).update(vm_state=VmState.ERROR)
    first.faults.create(code=500, message="broken")
    few, count = detail_queries(admin, version)
    assert count == 1
    for n in range(12):
        row = InstanceFactory(project=member.project, user=member.user, flavor=flavor, image=image, name=f"more{n}")
        instance = on_host(row, host_name=f"hv{n % 3}")
        InstanceTag.objects.create(instance=instance, tag=f"t{n}")
        Instance.objects.filter(pk=instance.pk).update(vm_state=VmState.ERROR)
        instance.faults.create(code=500, message="broken")
    many, count = detail_queries(admin, version)
    assert count == 13
    assert many <= few


def test_ignored_sort_keys_and_unknown_parameters_until_2_75(member, admin, fleet, server_microversions):
    # Sort keys the compute API tolerates without sorting by them, until 2.75 refuses them.
    assert names(member, "sort_key=vcpus&sort_key=display_name&sort_dir=asc", "2.74") == sorted(names(member))
    assert names(member, "sort_key=locked&sort_dir=asc", "2.72") == names(member)
    assert member.client.get(f"{BASE}/servers?sort_key=vcpus", **v("2.75")).status_code == 400
    assert len(names(member, "sort_key=locked", "2.75")) == 5
    # Unknown parameters: ignored before 2.75, refused from 2.75.
    assert len(names(member, "colour=blue", "2.74")) == 5
    response = member.client.get(f"{BASE}/servers?colour=blue", **v("2.75"))
    assert response.status_code == 400 and "colour" in response.json()["badRequest"]["message"]
    # Admin filters are ignored for members, at every version.
    assert len(names(member, "host=nowhere&kernel_id=x", "2.75")) == 5


def test_admin_filters(admin, member, fleet):
    assert names(admin, "all_tenants=1&vm_state=paused&vm_state=stopped") == ["gamma", "beta"]
    assert names(admin, f"all_tenants=1&uuid={fleet['delta'].uuid}") == ["delta"]
    assert names(admin, "all_tenants=1&power_state=3") == ["beta"]
    assert names(admin, f"all_tenants=1&user_id={member.user.username}&task_state=rebooting") == ["delta"]
    for query in ["uuid=nope", "power_state=on", "launch_index=x"]:
        assert admin.client.get(f"{BASE}/servers?all_tenants=1&{query}", **v("2.47")).status_code == 400
    # Filters of the compute API on attributes this cloud does not keep are refused, not ignored.
    response = admin.client.get(f"{BASE}/servers?all_tenants=1&image_ref=aki", **v("2.47"))
    assert response.status_code == 400 and "image_ref" in response.json()["badRequest"]["message"]


def test_the_compute_apis_regex_and_config_drive_filters(admin, member, fleet, server_microversions):
    """As Nova matches them: a regular expression over the column's text (a timestamp's as
    ``YYYY-MM-DD HH:MM:SS`` in UTC, the same text for every server where the value is the same here);
    ``config_drive`` as a boolean. Admins at every version, members from 2.83 (ignored before)."""
    Instance.objects.filter(pk=fleet["beta"].pk).update(
        access_ip_v4="192.0.2.7", description="the web tier", config_drive=False,
        launched_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )  # fmt: skip
    query = "all_tenants=1&"
    assert names(admin, query + "access_ip_v4=^192\\.0\\.2\\.") == ["beta"]
    assert names(admin, query + "description=web") == ["beta"]
    assert names(admin, query + "display_name=^(alpha|gamma)$") == ["gamma", "alpha"]
    assert names(admin, query + "launched_at=^2026-01-02 03:04") == ["beta"]
    assert names(admin, query + "config_drive=false") == ["beta"]  # every other server got one
    assert len(names(admin, query + "config_drive=true")) == 4
    assert len(names(admin, query + "kernel_id=")) == 5 and names(admin, query + "kernel_id=aki") == []
    assert names(admin, query + "root_device_name=vda$") != []
    assert admin.client.get(f"{BASE}/servers?{query}description=(", **v("2.47")).status_code == 400
    assert admin.client.get(f"{BASE}/servers?{query}config_drive=maybe", **v("2.47")).status_code == 400
    # Members: ignored before 2.83, applied from it.
    assert len(names(member, "config_drive=false&launched_at=^2026-01", "2.82")) == 5
    assert names(member, "config_drive=false&launched_at=^2026-01", "2.83") == ["beta"]
    assert len(names(member, "access_ip_v4=192", "2.82")) == 5


def test_the_progress_filter_matches_the_progress_the_api_shows(admin, member, fleet):
    Instance.objects.filter(pk=fleet["web-1"].pk).update(
        vm_state=VmState.BUILDING, task_state=TaskState.BLOCK_DEVICE_MAPPING, step_progress=50
    )
    shown = {
        s["name"]: s.get("progress") for s in member.client.get(f"{BASE}/servers/detail", **v("2.83")).json()["servers"]
    }
    assert shown["web-1"] == 50 and shown["alpha"] == 100
    assert names(admin, "all_tenants=1&progress=^50$") == ["web-1"]
    assert names(admin, "all_tenants=1&progress=^100$") == ["delta", "alpha"]
    assert names(member, "progress=^(0|50)$", "2.83") == ["web-1", "gamma", "beta"]
    assert len(names(member, "progress=^50$", "2.82")) == 5  # ignored for members before 2.83
    assert admin.client.get(f"{BASE}/servers?progress=(", **v("2.47")).status_code == 400
