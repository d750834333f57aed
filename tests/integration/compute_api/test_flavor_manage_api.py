"""Flavors written by admins: create, describe (2.55), delete; extra specs; access to private flavors."""

import pytest

from portal.models import Flavor, FlavorAccess
from tests.factories import FlavorFactory

from .admin_helpers import BASE, allow_version, v

pytestmark = pytest.mark.integration


def create(caller, body: dict, version: str = "2.1"):
    return caller.client.post(f"{BASE}/flavors", {"flavor": body}, format="json", **v(version))


TINY = {"name": "t1.tiny", "ram": 512, "vcpus": 1, "disk": 1}


def test_admin_creates_a_flavor_and_everyone_sees_it(admin, member):
    response = create(admin, {**TINY, "id": "10", "swap": 256, "OS-FLV-EXT-DATA:ephemeral": 2})
    assert response.status_code == 200
    flavor = response.json()["flavor"]
    assert flavor == {
        "id": "10",
        "name": "t1.tiny",
        "ram": 512,
        "vcpus": 1,
        "disk": 1,
        "swap": 256,
        "OS-FLV-EXT-DATA:ephemeral": 2,
        "OS-FLV-DISABLED:disabled": False,
        "os-flavor-access:is_public": True,
        "rxtx_factor": 1.0,
        "links": flavor["links"],
    }
    assert flavor["links"][0]["href"].endswith("/compute/v2.1/flavors/10")
    shown = member.client.get(f"{BASE}/flavors/10").json()["flavor"]
    assert shown == flavor


def test_rxtx_factor_is_kept_shown_and_sorted_by_until_2_102(admin, member, monkeypatch):
    """As Nova keeps it, though nothing scales bandwidth by it here."""
    assert create(admin, {**TINY, "id": "20", "rxtx_factor": 2.5}).status_code == 200
    assert create(admin, {**TINY, "name": "t1.other", "id": "21", "rxtx_factor": "0.5"}).status_code == 200
    assert member.client.get(f"{BASE}/flavors/20").json()["flavor"]["rxtx_factor"] == 2.5
    listed = member.client.get(f"{BASE}/flavors/detail?sort_key=rxtx_factor&sort_dir=asc").json()["flavors"]
    assert [(f["id"], f["rxtx_factor"]) for f in listed] == [("21", 0.5), ("20", 2.5)]
    allow_version(monkeypatch, "2.102")
    assert "rxtx_factor" not in member.client.get(f"{BASE}/flavors/20", **v("2.102")).json()["flavor"]


def test_flavor_without_id_gets_a_uuid_and_numbers_may_be_strings(admin):
    response = create(admin, {"name": "auto", "ram": "1024", "vcpus": "2", "disk": "0", "id": None})
    assert response.status_code == 200
    flavor = response.json()["flavor"]
    assert len(flavor["id"]) == 36 and flavor["id"].count("-") == 4
    assert (flavor["ram"], flavor["vcpus"], flavor["disk"], flavor["swap"]) == (1024, 2, 0, "")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**TINY, "ram": 0}, "ram"),
        ({**TINY, "vcpus": -1}, "vcpus"),
        ({**TINY, "disk": "x"}, "disk"),
        ({**TINY, "name": " padded"}, "name"),
        ({**TINY, "name": ""}, "name"),
        ({**TINY, "id": "bad/id"}, "id"),
        ({**TINY, "os-flavor-access:is_public": "maybe"}, "is_public"),
        ({**TINY, "rxtx_factor": 0}, "rxtx_factor"),
        ({**TINY, "rxtx_factor": "fast"}, "rxtx_factor"),
        ({**TINY, "rxtx_factor": 1e39}, "rxtx_factor"),
        ({**TINY, "description": "too early"}, "description"),
        ({**TINY, "colour": "red"}, "colour"),
        ({"name": "x", "ram": 1, "vcpus": 1}, "disk"),
    ],
)
def test_invalid_flavor_bodies_are_400(admin, body, fragment):
    response = create(admin, body)
    assert response.status_code == 400, response.json()
    assert fragment in response.json()["badRequest"]["message"]
    assert not Flavor.objects.exists()


def test_duplicate_name_or_id_is_409(admin):
    assert create(admin, {**TINY, "id": "1"}).status_code == 200
    name_taken = create(admin, {**TINY, "id": "2"})
    assert name_taken.status_code == 409
    assert name_taken.json()["conflictingRequest"]["message"] == "Flavor with name t1.tiny already exists."
    id_taken = create(admin, {**TINY, "name": "other", "id": "1"})
    assert id_taken.json()["conflictingRequest"]["message"] == "Flavor with ID 1 already exists."


def test_only_admins_write_flavors(member, reader, monkeypatch):
    allow_version(monkeypatch, "2.55")
    flavor = FlavorFactory(flavorid="5")
    for caller in (member, reader):
        assert create(caller, TINY).status_code == 403
        assert caller.client.delete(f"{BASE}/flavors/5").status_code == 403
        response = caller.client.put(f"{BASE}/flavors/5", {"flavor": {"description": "x"}}, format="json", **v("2.55"))
        assert response.status_code == 403
    assert Flavor.objects.filter(pk=flavor.pk).exists()


def test_delete_is_202_and_then_404(admin):
    FlavorFactory(flavorid="7")
    assert admin.client.delete(f"{BASE}/flavors/7").status_code == 202
    assert admin.client.get(f"{BASE}/flavors/7").status_code == 404
    assert admin.client.delete(f"{BASE}/flavors/7").status_code == 404


def test_description_from_2_55(admin, member, monkeypatch):
    allow_version(monkeypatch, "2.55")
    response = create(admin, {**TINY, "id": "3", "description": "small and cheap"}, "2.55")
    assert response.json()["flavor"]["description"] == "small and cheap"
    listed = member.client.get(f"{BASE}/flavors", **v("2.55")).json()["flavors"]
    assert listed[0]["description"] == "small and cheap"
    assert set(listed[0]) == {"id", "name", "links", "description"}
    assert "description" not in member.client.get(f"{BASE}/flavors", **v("2.54")).json()["flavors"][0]
    assert "description" not in member.client.get(f"{BASE}/flavors/3", **v("2.54")).json()["flavor"]

    updated = admin.client.put(f"{BASE}/flavors/3", {"flavor": {"description": None}}, format="json", **v("2.55"))
    assert updated.status_code == 200
    assert updated.json()["flavor"]["description"] is None
    assert Flavor.objects.get(flavorid="3").description is None
    # The only field PUT takes is description, and PUT does not exist before 2.55.
    bad = admin.client.put(f"{BASE}/flavors/3", {"flavor": {"name": "x"}}, format="json", **v("2.55"))
    assert bad.status_code == 400
    early = admin.client.put(f"{BASE}/flavors/3", {"flavor": {"description": "x"}}, format="json", **v("2.54"))
    assert early.status_code == 404


def test_extra_specs_in_flavor_bodies_from_2_61_and_swap_number_from_2_75(admin, member, monkeypatch):
    allow_version(monkeypatch, "2.75")
    FlavorFactory(flavorid="4", extra_specs={"hw:cpu_policy": "shared"})
    before = member.client.get(f"{BASE}/flavors/4", **v("2.60")).json()["flavor"]
    assert "extra_specs" not in before and before["swap"] == ""
    at_61 = member.client.get(f"{BASE}/flavors/4", **v("2.61")).json()["flavor"]
    assert at_61["extra_specs"] == {"hw:cpu_policy": "shared"}
    detail = member.client.get(f"{BASE}/flavors/detail", **v("2.61")).json()["flavors"]
    assert detail[0]["extra_specs"] == {"hw:cpu_policy": "shared"}
    assert member.client.get(f"{BASE}/flavors/4", **v("2.75")).json()["flavor"]["swap"] == 0
    created = create(admin, {**TINY, "id": "9"}, "2.61").json()["flavor"]
    assert created["extra_specs"] == {}


def test_unknown_query_parameters_are_400_from_2_75(member, monkeypatch):
    allow_version(monkeypatch, "2.75")
    FlavorFactory(flavorid="1")
    assert member.client.get(f"{BASE}/flavors?colour=red", **v("2.74")).status_code == 200
    response = member.client.get(f"{BASE}/flavors?colour=red", **v("2.75"))
    assert response.status_code == 400
    assert "colour" in response.json()["badRequest"]["message"]


# --- extra specs -----------------------------------------------------------------------------------


def specs_url(flavor_id: str, key: str = "") -> str:
    return f"{BASE}/flavors/{flavor_id}/os-extra_specs" + (f"/{key}" if key else "")


def test_extra_specs_crud(admin, member):
    FlavorFactory(flavorid="1")
    response = admin.client.post(
        specs_url("1"), {"extra_specs": {"hw:cpu_policy": "dedicated", "hw:numa_nodes": 2}}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {"extra_specs": {"hw:cpu_policy": "dedicated", "hw:numa_nodes": 2}}
    # Stored and shown as strings, to every member of a project that sees the flavor.
    assert member.client.get(specs_url("1")).json() == {
        "extra_specs": {"hw:cpu_policy": "dedicated", "hw:numa_nodes": "2"}
    }
    assert member.client.get(specs_url("1", "hw:numa_nodes")).json() == {"hw:numa_nodes": "2"}

    updated = admin.client.put(specs_url("1", "hw:numa_nodes"), {"hw:numa_nodes": "1"}, format="json")
    assert updated.status_code == 200 and updated.json() == {"hw:numa_nodes": "1"}
    mismatch = admin.client.put(specs_url("1", "hw:numa_nodes"), {"hw:cpu_policy": "shared"}, format="json")
    assert mismatch.status_code == 400
    assert mismatch.json()["badRequest"]["message"] == "Request body and URI mismatch"
    two = admin.client.put(specs_url("1", "a"), {"a": "1", "b": "2"}, format="json")
    assert two.status_code == 400

    assert admin.client.delete(specs_url("1", "hw:cpu_policy")).status_code == 200
    assert Flavor.objects.get(flavorid="1").extra_specs == {"hw:numa_nodes": "1"}
    missing = member.client.get(specs_url("1", "hw:cpu_policy"))
    assert missing.status_code == 404
    assert missing.json()["itemNotFound"]["message"] == "Flavor 1 has no extra specs with key hw:cpu_policy."
    assert admin.client.delete(specs_url("1", "hw:cpu_policy")).status_code == 404
    assert member.client.get(specs_url("nope")).status_code == 404


def test_members_cannot_write_extra_specs(member):
    FlavorFactory(flavorid="1")
    assert member.client.post(specs_url("1"), {"extra_specs": {"a": "b"}}, format="json").status_code == 403
    assert member.client.put(specs_url("1", "a"), {"a": "b"}, format="json").status_code == 403
    assert member.client.delete(specs_url("1", "a")).status_code == 403
    assert Flavor.objects.get(flavorid="1").extra_specs == {}


@pytest.mark.parametrize(
    ("specs", "fragment"),
    [
        ({"hw:cpu_policy": "banana"}, "'banana' is not one of: dedicated, shared, mixed"),
        ({"hw:mem_page_size": "huge"}, "'huge' is not of the format"),
        ({"hw:numa_nodes": "0"}, "less than the min value of '1'"),
        ({"hw:numa_nodes": "two"}, "not a valid integer"),
        ({"hw_rng:allowed": "perhaps"}, "not a valid boolean-like value"),
        ({"quota:cpu_shares": "-5"}, "less than the min value of '0'"),
        ({"trait:HW_CPU_X86_AVX2": "wanted"}, "is not one of: required, forbidden"),
        ({"resources:VCPU": "lots"}, "not a valid integer"),
        ({"hw:numa_cpus.0": "a-b"}, "is not of the format"),
        ({"bad key!": "x"}, "bad key!"),
        ({"k": "x" * 256}, "255"),
    ],
)
def test_invalid_extra_specs_are_400_with_a_reason(admin, specs, fragment):
    FlavorFactory(flavorid="1")
    response = admin.client.post(specs_url("1"), {"extra_specs": specs}, format="json")
    assert response.status_code == 400
    assert fragment in response.json()["badRequest"]["message"]
    assert Flavor.objects.get(flavorid="1").extra_specs == {}


def test_valid_specs_of_every_known_namespace_and_free_form_keys_are_accepted(admin, monkeypatch):
    allow_version(monkeypatch, "2.61")
    FlavorFactory(flavorid="1")
    specs = {
        "hw:cpu_policy": "mixed",
        "hw:cpu_dedicated_mask": "^0-1",
        "hw:mem_page_size": "2MB",
        "hw:numa_cpus.0": "0,1",
        "hw:numa_mem.0": "512",
        "hw_rng:allowed": "True",
        "quota:disk_read_iops_sec": "100",
        "trait:HW_CPU_X86_AVX2": "required",
        "trait1:CUSTOM_GPU": "forbidden",
        "resources:VCPU": "2",
        "resources_gpu:CUSTOM_MAGIC": "1",
        "aggregate_instance_extra_specs:ssd": "true",
        "capabilities:hypervisor_type": "s== QEMU",
        "hw:not_a_known_key": "anything",
        "my-company:tier": "gold",
        "plain": "value",
    }
    response = admin.client.post(specs_url("1"), {"extra_specs": specs}, format="json", **v("2.61"))
    assert response.status_code == 200, response.json()
    assert Flavor.objects.get(flavorid="1").extra_specs == specs


def test_unknown_keys_of_known_namespaces_are_refused_from_2_86(admin, monkeypatch):
    allow_version(monkeypatch, "2.86")
    FlavorFactory(flavorid="1")
    ok = admin.client.post(
        specs_url("1"), {"extra_specs": {"hw:nope": "1", "vendor:x": "1"}}, format="json", **v("2.85")
    )
    assert ok.status_code == 200
    strict = admin.client.post(specs_url("1"), {"extra_specs": {"hw:nope2": "1"}}, format="json", **v("2.86"))
    assert strict.status_code == 400
    assert "does not appear to be a valid extra spec" in strict.json()["badRequest"]["message"]
    free = admin.client.post(specs_url("1"), {"extra_specs": {"vendor:y": "1"}}, format="json", **v("2.86"))
    assert free.status_code == 200


# --- access to private flavors ----------------------------------------------------------------------


def action(caller, flavor_id: str, name: str, tenant: str, version: str = "2.7"):
    return caller.client.post(
        f"{BASE}/flavors/{flavor_id}/action", {name: {"tenant": tenant}}, format="json", **v(version)
    )


def test_private_flavor_is_visible_to_projects_given_access(admin, member, stranger, monkeypatch):
    allow_version(monkeypatch, "2.7")
    FlavorFactory(flavorid="1", name="public")
    FlavorFactory(flavorid="p", name="private", is_public=False)
    assert [f["id"] for f in member.client.get(f"{BASE}/flavors").json()["flavors"]] == ["1"]
    assert member.client.get(f"{BASE}/flavors/p").status_code == 404

    granted = action(admin, "p", "addTenantAccess", member.project.pk)
    assert granted.status_code == 200
    assert granted.json() == {"flavor_access": [{"flavor_id": "p", "tenant_id": member.project.pk}]}
    assert [f["id"] for f in member.client.get(f"{BASE}/flavors").json()["flavors"]] == ["1", "p"]
    assert member.client.get(f"{BASE}/flavors/p").status_code == 200
    # Another project still does not see it.
    assert [f["id"] for f in stranger.client.get(f"{BASE}/flavors").json()["flavors"]] == ["1"]
    assert stranger.client.get(f"{BASE}/flavors/p").status_code == 404

    listed = admin.client.get(f"{BASE}/flavors/p/os-flavor-access")
    assert listed.json() == {"flavor_access": [{"flavor_id": "p", "tenant_id": member.project.pk}]}

    removed = action(admin, "p", "removeTenantAccess", member.project.pk)
    assert removed.status_code == 200 and removed.json() == {"flavor_access": []}
    assert member.client.get(f"{BASE}/flavors/p").status_code == 404


def test_admins_list_private_flavors_with_is_public_filters(admin):
    FlavorFactory(flavorid="1", name="public")
    FlavorFactory(flavorid="p", name="private", is_public=False)
    ids = lambda query: [f["id"] for f in admin.client.get(f"{BASE}/flavors{query}").json()["flavors"]]  # noqa: E731
    assert ids("") == ["1"]
    assert ids("?is_public=false") == ["p"]
    assert ids("?is_public=None") == ["1", "p"]


def test_disabled_flavors_are_hidden_from_members(admin, member):
    FlavorFactory(flavorid="1")
    FlavorFactory(flavorid="2", disabled=True)
    assert [f["id"] for f in member.client.get(f"{BASE}/flavors").json()["flavors"]] == ["1"]
    assert [f["id"] for f in admin.client.get(f"{BASE}/flavors").json()["flavors"]] == ["1", "2"]


def test_flavor_access_errors(admin, member, monkeypatch):
    allow_version(monkeypatch, "2.7")
    FlavorFactory(flavorid="1")
    FlavorFactory(flavorid="p", is_public=False)
    public_list = admin.client.get(f"{BASE}/flavors/1/os-flavor-access")
    assert public_list.status_code == 404
    assert public_list.json()["itemNotFound"]["message"] == "Access list not available for public flavors."
    public_add = action(admin, "1", "addTenantAccess", member.project.pk)
    assert public_add.status_code == 409
    # Before 2.7 the compute API let a public flavor be given to a project too.
    assert action(admin, "1", "addTenantAccess", member.project.pk, version="2.6").status_code == 200
    assert action(admin, "p", "addTenantAccess", member.project.pk).status_code == 200
    again = action(admin, "p", "addTenantAccess", member.project.pk)
    assert again.status_code == 409
    assert "already exists" in again.json()["conflictingRequest"]["message"]
    unknown = action(admin, "p", "addTenantAccess", "f" * 32)
    assert unknown.status_code == 400
    assert unknown.json()["badRequest"]["message"] == f"Project ID {'f' * 32} is not a valid project."
    not_there = action(admin, "p", "removeTenantAccess", "f" * 32)
    assert not_there.status_code == 404
    assert admin.client.post(f"{BASE}/flavors/p/action", {"explode": {}}, format="json").status_code == 400
    assert action(member, "p", "addTenantAccess", member.project.pk).status_code == 403
    assert member.client.get(f"{BASE}/flavors/p/os-flavor-access").status_code == 403
    assert FlavorAccess.objects.filter(flavor__flavorid="p").count() == 1


def test_flavor_list_queries_do_not_grow_with_flavors(member, django_assert_max_num_queries, monkeypatch):
    allow_version(monkeypatch, "2.61")
    for n in range(3):
        FlavorFactory(flavorid=str(n))
    with django_assert_max_num_queries(6) as few:
        member.client.get(f"{BASE}/flavors/detail", **v("2.61"))
    baseline = len(few.captured_queries)
    for n in range(3, 30):
        FlavorFactory(flavorid=str(n))
    with django_assert_max_num_queries(baseline):
        assert len(member.client.get(f"{BASE}/flavors/detail", **v("2.61")).json()["flavors"]) == 30
