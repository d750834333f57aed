"""Reads by compiled queries and rows made into models (``portal.selectors.rows``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from portal.models import FlavorAccess, Instance
from portal.selectors import rows
from portal.selectors.flavors import flavors_listed
from portal.selectors.instances import instance_shown
from tests.factories import FlavorFactory, InstanceFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def _ctx(project, *, admin=False):
    return SimpleNamespace(project=project, is_admin=admin)


def test_a_compiled_query_binds_each_callers_values():
    """The second project's call runs the SQL compiled for the first one's, with its own project."""
    first, second = ProjectFactory(), ProjectFactory()
    FlavorFactory(flavorid="pub", name="public", is_public=True)
    for project, flavorid in ((first, "p1"), (second, "p2")):
        flavor = FlavorFactory(flavorid=flavorid, name=f"private-{flavorid}", is_public=False)
        FlavorAccess.objects.create(flavor=flavor, project=project)
    for _ in range(2):
        assert [f.flavorid for f in flavors_listed(_ctx(first))] == ["p1", "pub"]
        assert [f.flavorid for f in flavors_listed(_ctx(second))] == ["p2", "pub"]
        assert [f.flavorid for f in flavors_listed(_ctx(second), min_ram=10**6)] == []


def test_a_server_is_shown_to_its_project_and_admins_only():
    owner, other = ProjectFactory(), ProjectFactory()
    server = InstanceFactory(project=owner)
    for _ in range(2):  # compiled on the first call, bound on the second
        assert instance_shown(_ctx(owner), server.uuid).pk == server.pk
        assert instance_shown(_ctx(other), server.uuid) is None
        assert instance_shown(_ctx(other, admin=True), server.uuid).pk == server.pk


def test_shown_servers_are_models_with_their_relations_and_lazy_columns():
    server = InstanceFactory(key_data="ssh-ed25519 AAAA")
    shown = instance_shown(_ctx(server.project), server.uuid)
    assert isinstance(shown, Instance)
    assert shown.flavor.flavorid == server.flavor.flavorid
    assert shown.user.username == server.user.username
    assert shown.key_data == "ssh-ed25519 AAAA"  # a column the view does not read, loaded when used
    assert shown.tag_list == [] and shown.volume_list == []


def test_a_value_equal_to_a_constant_of_the_query_is_not_cached():
    """A value that could be taken for one of the query's own constants leaves the query uncompiled."""
    query = rows.CompiledQuery(
        lambda _shape, *, name: Instance.objects.filter(vm_state="active", name=name).values_list("name")
    )
    InstanceFactory(name="active", vm_state="active")
    assert query.rows("by-name", name="active") == [("active",)]
    assert query._plans == {}
    assert query.rows("by-name", name="other") == []
    assert list(query._plans) == [("by-name", ("name",))]
    assert query.rows("by-name", name="active") == [("active",)]
