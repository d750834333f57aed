"""``/os-quota-sets``, ``/os-quota-class-sets`` and ``/limits``: shapes per microversion, policy, validation."""

import pytest

from portal.models import QuotaClassLimit, QuotaLimit, Role
from tests.conftest import Caller
from tests.factories import FlavorFactory, ImageFactory, InstanceFactory, MembershipFactory

pytestmark = pytest.mark.integration


ENFORCED = {"instances", "cores", "ram", "key_pairs", "metadata_items", "server_groups", "server_group_members"}
NETWORK = {"fixed_ips", "floating_ips", "security_groups", "security_group_rules"}
PERSONALITY = {"injected_files", "injected_file_content_bytes", "injected_file_path_bytes"}


def v(version):
    return {"HTTP_OPENSTACK_API_VERSION": f"compute {version}"}


def url(project_id, suffix=""):
    return f"/compute/v2.1/os-quota-sets/{project_id}{suffix}"


@pytest.mark.parametrize(
    ("version", "keys"),
    [
        ("2.1", ENFORCED | NETWORK | PERSONALITY),
        ("2.35", ENFORCED | NETWORK | PERSONALITY),
        ("2.36", ENFORCED | PERSONALITY),
        ("2.56", ENFORCED | PERSONALITY),
        ("2.57", ENFORCED),
        ("2.100", ENFORCED),
    ],
)
def test_quota_set_shape_follows_the_microversion(member, version, keys):
    response = member.client.get(url(member.project.pk), **v(version))
    assert response.status_code == 200, response.content
    body = response.json()["quota_set"]
    assert set(body) == keys | {"id"}
    assert body["id"] == member.project.pk
    if version in ("2.1", "2.35"):
        assert body["floating_ips"] == -1 and body["injected_files"] == 5


def test_builtin_defaults_are_novas(member):
    body = member.client.get(url(member.project.pk, "/defaults"), **v("2.57")).json()["quota_set"]
    assert body == {
        "id": member.project.pk,
        "instances": 10,
        "cores": 20,
        "ram": 51200,
        "key_pairs": 100,
        "metadata_items": 128,
        "server_groups": 10,
        "server_group_members": 10,
    }


def test_resolution_user_then_project_then_default_class(admin, member):
    project = member.project
    QuotaClassLimit.objects.create(class_name="default", resource="cores", hard_limit=40)
    QuotaClassLimit.objects.create(class_name="other", resource="cores", hard_limit=99)  # not honoured
    QuotaLimit.objects.create(project=project, resource="instances", hard_limit=5)
    QuotaLimit.objects.create(project=project, user=member.user, resource="instances", hard_limit=2)

    shown = admin.client.get(url(project.pk), **v("2.57")).json()["quota_set"]
    assert (shown["cores"], shown["instances"], shown["ram"]) == (40, 5, 51200)
    mine = admin.client.get(url(project.pk) + f"?user_id={member.user.username}", **v("2.57")).json()["quota_set"]
    assert (mine["cores"], mine["instances"]) == (40, 2)
    defaults = admin.client.get(url(project.pk, "/defaults"), **v("2.57")).json()["quota_set"]
    assert (defaults["cores"], defaults["instances"]) == (40, 10)


def test_detail_counts_usage(member):
    flavor = FlavorFactory(vcpus=2, memory_mb=1024)
    image = ImageFactory(owner=member.project)
    InstanceFactory.create_batch(3, project=member.project, user=member.user, flavor=flavor, image=image)
    InstanceFactory(project=member.project, user=member.user, flavor=flavor, image=image, vm_state="deleted")
    response = member.client.get(url(member.project.pk, "/detail"), **v("2.57"))
    assert response.status_code == 200, response.content
    body = response.json()["quota_set"]
    assert body["instances"] == {"limit": 10, "in_use": 3, "reserved": 0}
    assert body["cores"] == {"limit": 20, "in_use": 6, "reserved": 0}
    assert body["ram"] == {"limit": 51200, "in_use": 3072, "reserved": 0}
    assert set(body) == ENFORCED | {"id"}


def test_update_force_and_delete(admin, member):
    project = member.project
    image = ImageFactory(owner=project)
    InstanceFactory.create_batch(3, project=project, user=member.user, image=image)
    body = {"quota_set": {"instances": 2, "cores": "30"}}
    refused = admin.client.put(url(project.pk), body, format="json", **v("2.57"))
    assert refused.status_code == 400
    assert "must be greater than or equal to already used and reserved 3" in refused.json()["badRequest"]["message"]
    assert not QuotaLimit.objects.exists()  # nothing written when one value is refused

    body["quota_set"]["force"] = "True"
    response = admin.client.put(url(project.pk), body, format="json", **v("2.57"))
    assert response.status_code == 200, response.content
    updated = response.json()["quota_set"]
    assert "id" not in updated
    assert (updated["instances"], updated["cores"]) == (2, 30)
    assert set(updated) == ENFORCED

    deleted = admin.client.delete(url(project.pk), **v("2.57"))
    assert deleted.status_code == 202 and deleted.content == b""
    assert member.client.get(url(project.pk), **v("2.57")).json()["quota_set"]["instances"] == 10


def test_per_user_limits_cannot_exceed_the_projects(admin, member):
    project = member.project
    QuotaLimit.objects.create(project=project, resource="instances", hard_limit=4)
    user_url = url(project.pk) + f"?user_id={member.user.username}"
    over = admin.client.put(user_url, {"quota_set": {"instances": 5}}, format="json", **v("2.57"))
    assert over.status_code == 400
    assert "must be less than or equal to 4" in over.json()["badRequest"]["message"]
    ok = admin.client.put(user_url, {"quota_set": {"instances": 3}}, format="json", **v("2.57"))
    assert ok.status_code == 200 and ok.json()["quota_set"]["instances"] == 3
    assert QuotaLimit.objects.get(user=member.user).hard_limit == 3
    # Deleting the user's quota leaves the project's.
    assert admin.client.delete(user_url, **v("2.57")).status_code == 202
    assert list(QuotaLimit.objects.values_list("user", "hard_limit")) == [(None, 4)]


def test_unknown_user_and_project_are_400(admin, member):
    assert admin.client.get(url(member.project.pk) + "?user_id=99999", **v("2.57")).status_code == 400
    stranger = MembershipFactory()
    not_member = admin.client.get(url(member.project.pk) + f"?user_id={stranger.user.username}", **v("2.57"))
    assert not_member.status_code == 400
    missing = admin.client.get(url("0" * 32), **v("2.57"))
    assert missing.status_code == 400 and "badRequest" in missing.json()


@pytest.mark.parametrize(
    "body",
    [
        {"quota_set": {"instances": -2}},
        {"quota_set": {"instances": 2**31}},
        {"quota_set": {"instances": "ten"}},
        {"quota_set": {"instances": "9" * 5000}},
        {"quota_set": {"instances": True}},
        {"quota_set": {"instances": 1.5}},
        {"quota_set": {"instances": None}},
        {"quota_set": {"bogus": 1}},
        {"quota_set": {"injected_files": 1}},  # gone in 2.57
        {"quota_set": {"instances": 1, "force": "maybe"}},
        {"quota_set": []},
        {"quota_set": {}, "extra": 1},
        {"quotas": {}},
        [],
    ],
)
def test_bad_updates_are_400(admin, member, body):
    response = admin.client.put(url(member.project.pk), body, format="json", **v("2.57"))
    assert response.status_code == 400, response.content
    assert response.json()["badRequest"]["code"] == 400


def test_old_microversions_accept_their_resources(admin, member):
    response = admin.client.put(
        url(member.project.pk), {"quota_set": {"injected_files": 7, "floating_ips": 3}}, format="json", **v("2.1")
    )
    assert response.status_code == 200, response.content
    assert (response.json()["quota_set"]["injected_files"], response.json()["quota_set"]["floating_ips"]) == (7, 3)
    refused = admin.client.put(url(member.project.pk), {"quota_set": {"floating_ips": 3}}, format="json", **v("2.36"))
    assert refused.status_code == 400


def test_policy(member, reader, stranger, admin):
    project = member.project
    assert reader.client.get(url(project.pk), **v("2.57")).status_code == 200
    assert reader.client.get(url(project.pk, "/detail"), **v("2.57")).status_code == 200
    assert stranger.client.get(url(project.pk), **v("2.57")).status_code == 403
    assert stranger.client.get(url(project.pk, "/detail"), **v("2.57")).status_code == 403
    for caller in (member, reader, stranger):
        assert caller.client.put(url(project.pk), {"quota_set": {"instances": 1}}, format="json").status_code == 403
        assert caller.client.delete(url(project.pk)).status_code == 403
    assert admin.client.get(url(project.pk), **v("2.57")).status_code == 200
    assert not QuotaLimit.objects.exists()


def test_strict_query_strings_from_2_75(member):
    assert member.client.get(url(member.project.pk) + "?foo=1", **v("2.74")).status_code == 200
    response = member.client.get(url(member.project.pk) + "?foo=1", **v("2.75"))
    assert response.status_code == 400 and "badRequest" in response.json()


# --- quota classes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "keys"),
    [
        ("2.1", (ENFORCED - {"server_groups", "server_group_members"}) | NETWORK | PERSONALITY),
        ("2.50", ENFORCED | PERSONALITY),
        ("2.57", ENFORCED),
    ],
)
def test_quota_class_shape_follows_the_microversion(admin, version, keys):
    response = admin.client.get("/compute/v2.1/os-quota-class-sets/default", **v(version))
    assert response.status_code == 200, response.content
    body = response.json()["quota_class_set"]
    assert body.pop("id") == "default"
    assert set(body) == keys


def test_default_class_update_changes_every_projects_default(admin, member):
    response = admin.client.put(
        "/compute/v2.1/os-quota-class-sets/default",
        {"quota_class_set": {"instances": 50, "ram": "-1"}},
        format="json",
        **v("2.57"),
    )
    assert response.status_code == 200, response.content
    assert "id" not in response.json()["quota_class_set"]
    shown = member.client.get(url(member.project.pk), **v("2.57")).json()["quota_set"]
    assert (shown["instances"], shown["ram"]) == (50, -1)
    limits = member.client.get("/compute/v2.1/limits", **v("2.57")).json()["limits"]["absolute"]
    assert (limits["maxTotalInstances"], limits["maxTotalRAMSize"]) == (50, -1)


def test_quota_classes_are_admin_only(member):
    assert member.client.get("/compute/v2.1/os-quota-class-sets/default").status_code == 403
    body = {"quota_class_set": {"instances": 1}}
    assert member.client.put("/compute/v2.1/os-quota-class-sets/default", body, format="json").status_code == 403
    assert not QuotaClassLimit.objects.exists()


# --- limits ------------------------------------------------------------------------------------------


def test_limits_per_microversion(member):
    image = ImageFactory(owner=member.project)
    InstanceFactory.create_batch(2, project=member.project, user=member.user, image=image, vcpus=2, memory_mb=256)
    old = member.client.get("/compute/v2.1/limits", **v("2.1")).json()["limits"]
    assert old["rate"] == []
    assert set(old["absolute"]) == {
        "maxTotalRAMSize",
        "maxTotalInstances",
        "maxTotalCores",
        "maxTotalKeypairs",
        "maxTotalFloatingIps",
        "maxServerMeta",
        "maxImageMeta",
        "maxPersonality",
        "maxPersonalitySize",
        "maxSecurityGroups",
        "maxSecurityGroupRules",
        "maxServerGroups",
        "maxServerGroupMembers",
        "totalRAMUsed",
        "totalCoresUsed",
        "totalInstancesUsed",
        "totalFloatingIpsUsed",
        "totalSecurityGroupsUsed",
        "totalServerGroupsUsed",
    }
    assert "maxImageMeta" not in member.client.get("/compute/v2.1/limits", **v("2.39")).json()["limits"]["absolute"]
    new = member.client.get("/compute/v2.1/limits", **v("2.57")).json()["limits"]["absolute"]
    assert new == {
        "maxTotalRAMSize": 51200,
        "maxTotalInstances": 10,
        "maxTotalCores": 20,
        "maxTotalKeypairs": 100,
        "maxServerMeta": 128,
        "maxServerGroups": 10,
        "maxServerGroupMembers": 10,
        "totalRAMUsed": 512,
        "totalCoresUsed": 4,
        "totalInstancesUsed": 2,
        "totalServerGroupsUsed": 0,
    }


def test_limits_of_another_project_are_for_admins(member, stranger, admin):
    image = ImageFactory(owner=member.project)
    InstanceFactory(project=member.project, user=member.user, image=image)
    other = f"/compute/v2.1/limits?tenant_id={member.project.pk}"
    assert stranger.client.get(other, **v("2.57")).status_code == 403
    response = admin.client.get(other, **v("2.57"))
    assert response.status_code == 200
    assert response.json()["limits"]["absolute"]["totalInstancesUsed"] == 1
    assert admin.client.get("/compute/v2.1/limits?tenant_id=nope", **v("2.57")).status_code == 400
    assert member.client.get("/compute/v2.1/limits?bogus=1", **v("2.75")).status_code == 400


def test_project_id_in_the_path(member):
    response = member.client.get(f"/compute/v2.1/{member.project.pk}/limits", **v("2.57"))
    assert response.status_code == 200


def test_reader_of_the_project_gets_no_writes(db):
    caller = Caller(Role.READER)
    response = caller.client.put(url(caller.project.pk), {"quota_set": {"instances": 1}}, format="json")
    assert response.status_code == 403 and "forbidden" in response.json()
