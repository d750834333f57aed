"""``/os-server-groups``: the pre-2.64 ``policies`` shape, the 2.64 ``policy``/``rules`` shape, members,
project scoping and quotas."""

import uuid

import pytest

from portal.models import QuotaLimit, ServerGroup
from tests.factories import InstanceFactory

from .admin_helpers import BASE, allow_version, v

pytestmark = pytest.mark.integration


def create(caller, body: dict, version: str = "2.1"):
    return caller.client.post(f"{BASE}/os-server-groups", {"server_group": body}, format="json", **v(version))


def test_pre_2_64_shape(member):
    response = create(member, {"name": "web", "policies": ["anti-affinity"]})
    assert response.status_code == 200
    group = response.json()["server_group"]
    assert group == {
        "id": str(ServerGroup.objects.get().uuid),
        "name": "web",
        "policies": ["anti-affinity"],
        "members": [],
        "metadata": {},
    }
    at_213 = member.client.get(f"{BASE}/os-server-groups/{group['id']}", **v("2.13")).json()["server_group"]
    assert at_213["project_id"] == member.project.pk and at_213["user_id"] == member.user.username


def test_soft_policies_need_2_15(member):
    too_early = create(member, {"name": "g", "policies": ["soft-affinity"]}, "2.14")
    assert too_early.status_code == 400
    assert create(member, {"name": "g", "policies": ["soft-affinity"]}, "2.15").status_code == 200
    assert create(member, {"name": "g", "policies": ["affinity", "anti-affinity"]}, "2.15").status_code == 400
    assert create(member, {"name": "g", "policies": []}).status_code == 400
    assert create(member, {"name": "g", "policy": "affinity"}, "2.15").status_code == 400


def test_2_64_policy_and_rules(member, monkeypatch):
    allow_version(monkeypatch, "2.64")
    response = create(
        member, {"name": "spread", "policy": "anti-affinity", "rules": {"max_server_per_host": 2}}, "2.64"
    )
    assert response.status_code == 200
    group = response.json()["server_group"]
    assert group == {
        "id": group["id"],
        "name": "spread",
        "policy": "anti-affinity",
        "rules": {"max_server_per_host": 2},
        "members": [],
        "project_id": member.project.pk,
        "user_id": member.user.username,
    }
    assert ServerGroup.objects.get(uuid=group["id"]).rules == {"max_server_per_host": 2}
    # The same group, seen by an older client, has the old shape.
    old = member.client.get(f"{BASE}/os-server-groups/{group['id']}", **v("2.63")).json()["server_group"]
    assert old["policies"] == ["anti-affinity"] and "rules" not in old and old["metadata"] == {}

    plain = create(member, {"name": "together", "policy": "affinity"}, "2.64").json()["server_group"]
    assert plain["rules"] == {}
    rules_for_affinity = create(
        member, {"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}, "2.64"
    )
    assert rules_for_affinity.status_code == 400
    assert rules_for_affinity.json()["badRequest"]["message"] == "Only anti-affinity policy supports rules."
    as_text = create(member, {"name": "t", "policy": "anti-affinity", "rules": {"max_server_per_host": "3"}}, "2.64")
    assert as_text.json()["server_group"]["rules"] == {"max_server_per_host": 3}
    for rules in (
        {"max_server_per_host": 0},
        {"max_server_per_host": "two"},
        {"max_server_per_host": 1.5},
        {"other": 1},
        [],
    ):
        bad = create(member, {"name": "x", "policy": "anti-affinity", "rules": rules}, "2.64")
        assert bad.status_code == 400, rules
    assert create(member, {"name": "x", "policies": ["affinity"]}, "2.64").status_code == 400


def test_members_are_the_live_servers_of_the_group(member):
    group_id = create(member, {"name": "g", "policies": ["affinity"]}).json()["server_group"]["id"]
    group = ServerGroup.objects.get(uuid=group_id)
    live = InstanceFactory(project=member.project, user=member.user, server_group=group)
    InstanceFactory(project=member.project, user=member.user, server_group=group, vm_state="deleted")
    shown = member.client.get(f"{BASE}/os-server-groups/{group_id}").json()["server_group"]
    assert shown["members"] == [str(live.uuid)]
    listed = member.client.get(f"{BASE}/os-server-groups").json()["server_groups"]
    assert listed[0]["members"] == [str(live.uuid)]


def test_groups_are_scoped_to_the_project(member, reader, stranger, admin):
    group_id = create(member, {"name": "mine", "policies": ["affinity"]}).json()["server_group"]["id"]
    create(stranger, {"name": "theirs", "policies": ["affinity"]})
    assert [g["name"] for g in member.client.get(f"{BASE}/os-server-groups").json()["server_groups"]] == ["mine"]
    assert [g["name"] for g in reader.client.get(f"{BASE}/os-server-groups").json()["server_groups"]] == ["mine"]
    # Another project's group is 403, as the compute API's policy answers; it stays, and shows nothing.
    for method in ("get", "delete"):
        refused = getattr(stranger.client, method)(f"{BASE}/os-server-groups/{group_id}")
        assert refused.status_code == 403 and "mine" not in refused.content.decode()
    assert ServerGroup.objects.filter(uuid=group_id).exists()
    assert stranger.client.get(f"{BASE}/os-server-groups/{uuid.uuid4()}").status_code == 404
    # all_projects is for admins only; others get their own project's groups.
    own = stranger.client.get(f"{BASE}/os-server-groups?all_projects=True").json()["server_groups"]
    assert [g["name"] for g in own] == ["theirs"]
    every = admin.client.get(f"{BASE}/os-server-groups?all_projects=True").json()["server_groups"]
    assert sorted(g["name"] for g in every) == ["mine", "theirs"]
    assert admin.client.get(f"{BASE}/os-server-groups").json()["server_groups"] == []
    assert admin.client.get(f"{BASE}/os-server-groups/{group_id}").status_code == 200
    # Readers read, members act.
    assert create(reader, {"name": "r", "policies": ["affinity"]}).status_code == 403
    assert reader.client.delete(f"{BASE}/os-server-groups/{group_id}").status_code == 403


def test_delete(member):
    group_id = create(member, {"name": "g", "policies": ["affinity"]}).json()["server_group"]["id"]
    server = InstanceFactory(project=member.project, user=member.user, server_group=ServerGroup.objects.get())
    assert member.client.delete(f"{BASE}/os-server-groups/{group_id}").status_code == 204
    assert member.client.get(f"{BASE}/os-server-groups/{group_id}").status_code == 404
    assert member.client.delete(f"{BASE}/os-server-groups/{group_id}").status_code == 404
    assert member.client.get(f"{BASE}/os-server-groups/not-a-uuid").status_code == 404
    # Its servers keep running, no longer in a group.
    server.refresh_from_db()
    assert server.server_group_id is None and server.vm_state == "active"


def test_limit_and_offset(member):
    for n in range(5):
        create(member, {"name": f"g{n}", "policies": ["affinity"]})
    page = member.client.get(f"{BASE}/os-server-groups?limit=2&offset=1").json()["server_groups"]
    assert [g["name"] for g in page] == ["g1", "g2"]
    assert member.client.get(f"{BASE}/os-server-groups?limit=-1").status_code == 400


def test_invalid_bodies(member):
    assert create(member, {"policies": ["affinity"]}).status_code == 400
    assert create(member, {"name": "", "policies": ["affinity"]}).status_code == 400
    assert create(member, {"name": "g", "policies": ["affinity"], "extra": 1}).status_code == 400
    assert member.client.post(f"{BASE}/os-server-groups", {"nope": {}}, format="json").status_code == 400
    assert not ServerGroup.objects.exists()


def test_server_group_quota(member):
    QuotaLimit.objects.create(project=member.project, resource="server_groups", hard_limit=1)
    assert create(member, {"name": "one", "policies": ["affinity"]}).status_code == 200
    over = create(member, {"name": "two", "policies": ["affinity"]})
    assert over.status_code == 403
    assert over.json()["forbidden"]["message"] == "Quota exceeded, too many server groups."


def test_server_group_list_queries_do_not_grow(member, django_assert_max_num_queries):
    def group_with_members(n):
        group = ServerGroup.objects.create(name=f"g{n}", project=member.project, user=member.user, policy="affinity")
        for _ in range(2):
            InstanceFactory(project=member.project, user=member.user, server_group=group)

    group_with_members(0)
    with django_assert_max_num_queries(8) as few:
        member.client.get(f"{BASE}/os-server-groups", **v("2.13"))
    baseline = len(few.captured_queries)
    for n in range(1, 10):
        group_with_members(n)
    with django_assert_max_num_queries(baseline):
        groups = member.client.get(f"{BASE}/os-server-groups", **v("2.13")).json()["server_groups"]
    assert len(groups) == 10 and all(len(g["members"]) == 2 for g in groups)
