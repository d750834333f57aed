"""POST /servers with everything the CLI and SDKs send: key pairs, tags, hints, zones, metadata, counts."""

import pytest

from portal.models import Aggregate, ComputeHost, Instance, Keypair, ServerGroup
from portal.states import TaskState, VmState

from .helpers import BASE, boot, booted, v

pytestmark = pytest.mark.integration

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@cloud"


@pytest.fixture
def keypair(member):
    return Keypair.objects.create(user=member.user, name="mykey", public_key=PUBLIC_KEY, fingerprint="aa:bb")


def test_key_name_copies_the_public_key_into_the_instance(member, flavor, image, keypair):
    instance = booted(member, flavor, image, key_name="mykey")
    assert (instance.key_name, instance.key_data) == ("mykey", PUBLIC_KEY)
    keypair.delete()  # deleting the key pair later does not change what the server was booted with
    instance.refresh_from_db()
    assert instance.key_data == PUBLIC_KEY
    server = member.client.get(f"{BASE}/servers/{instance.uuid}", **v("2.47")).json()["server"]
    assert server["key_name"] == "mykey"


def test_key_names_are_per_user(member, flavor, image, keypair):
    from tests.conftest import Caller

    colleague = Caller(project=member.project)
    response = boot(colleague, flavor, image, key_name="mykey")
    assert response.status_code == 400
    assert "key_name" in response.json()["badRequest"]["message"]


def test_tags_on_create_from_2_52(member, flavor, image, server_microversions):
    instance = booted(member, flavor, image, version="2.52", tags=["web", "prod", "web"])
    assert sorted(instance.tags.values_list("tag", flat=True)) == ["prod", "web"]
    server = member.client.get(f"{BASE}/servers/{instance.uuid}", **v("2.52")).json()["server"]
    assert server["tags"] == ["prod", "web"]
    assert boot(member, flavor, image, version="2.51", tags=["x"]).status_code == 400


@pytest.mark.parametrize("tags", [["a/b"], ["a,b"], [""], ["x" * 61], [f"t{n}" for n in range(51)], [5]])
def test_bad_tags_on_create_are_400(member, flavor, image, server_microversions, tags):
    assert boot(member, flavor, image, version="2.52", tags=tags).status_code == 400
    assert not Instance.objects.exists()


def test_scheduler_hints_and_group_are_kept_for_the_scheduler(member, flavor, image):
    group = ServerGroup.objects.create(name="g", project=member.project, user=member.user, policy="anti-affinity")
    other = booted(member, flavor, image)
    hints = {"group": str(group.uuid), "different_host": str(other.uuid), "query": '[">=", "$free_ram_mb", 1]'}
    instance = booted(member, flavor, image, hints=hints)
    assert instance.server_group == group
    assert instance.scheduler_hints == {
        "group": str(group.uuid),
        "different_host": [str(other.uuid)],
        "query": '[">=", "$free_ram_mb", 1]',
    }
    # The other spelling of the key is accepted too.
    body = {
        "server": {"name": "vm", "imageRef": str(image.id), "flavorRef": "1", "networks": "none"},
        "OS-SCH-HNT:scheduler_hints": {"same_host": [str(other.uuid)]},
    }
    response = member.client.post(f"{BASE}/servers", body, format="json", **v("2.47"))
    assert response.status_code == 202
    assert Instance.objects.get(uuid=response.json()["server"]["id"]).scheduler_hints == {
        "same_host": [str(other.uuid)]
    }


def test_another_projects_group_is_not_found(member, stranger, flavor, image):
    group = ServerGroup.objects.create(name="g", project=stranger.project, user=stranger.user, policy="affinity")
    response = boot(member, flavor, image, hints={"group": str(group.uuid)})
    assert response.status_code == 400
    assert "server group" in response.json()["badRequest"]["message"]


@pytest.mark.parametrize(
    "hints",
    [{"group": "not-a-uuid"}, {"same_host": ["nope"]}, {"different_host": 5}, "a string", {"big": "x" * 20000}],
)
def test_bad_scheduler_hints_are_400(member, flavor, image, hints):
    assert boot(member, flavor, image, hints=hints).status_code == 400
    assert not Instance.objects.exists()


def test_availability_zones_are_the_default_or_an_aggregates(member, admin, flavor, image):
    assert booted(member, flavor, image, availability_zone="nova").availability_zone == "nova"
    host = ComputeHost.objects.create(name="hv-az")
    aggregate = Aggregate.objects.create(name="agg", metadata={"availability_zone": "az2"})
    aggregate.hosts.add(host)
    assert booted(member, flavor, image, availability_zone="az2").availability_zone == "az2"
    assert boot(member, flavor, image, availability_zone="az3").status_code == 400
    # Forcing a host is an admin's privilege (see test_server_requested_host).
    assert boot(member, flavor, image, availability_zone="az2:hv-az").status_code == 403
    admin_image = image
    admin_image.visibility = "public"
    admin_image.save()
    forced = booted(admin, flavor, admin_image, availability_zone="az2:hv-az")
    assert (forced.requested_host, forced.force_host) == ("hv-az", True)


def test_description_only_from_2_19(member, flavor, image):
    assert boot(member, flavor, image, version="2.18", description="d").status_code == 400
    assert booted(member, flavor, image, version="2.19", description="d").description == "d"


def test_config_drive_and_host_name(member, flavor, image):
    instance = booted(member, flavor, image, name="My Web_Server", config_drive="True")
    assert instance.config_drive is True
    assert instance.hostname == "my-web-server"
    server = member.client.get(f"{BASE}/servers/{instance.uuid}", **v("2.47")).json()["server"]
    assert server["config_drive"] == "True"


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": {"bad/key": "v"}},
        {"metadata": {"k": "x" * 256}},
        {"metadata": {"k": 5}},
        {"config_drive": "maybe"},
        {"personality": [{"path": "/etc/motd", "contents": "not base64"}]},
        {"name": 12345},  # a name is a string, not a number
    ],
)
def test_more_bad_create_requests_are_400(member, flavor, image, change):
    response = boot(member, flavor, image, **change)
    assert response.status_code == 400, response.content
    assert not Instance.objects.exists()


def test_max_count_makes_that_many_with_numbered_names(member, flavor, image):
    response = boot(member, flavor, image, min_count=2, max_count=3)
    assert response.status_code == 202
    batch = Instance.objects.order_by("launch_index")
    assert [i.name for i in batch] == ["vm1-1", "vm1-2", "vm1-3"]
    assert {(i.vm_state, i.task_state) for i in batch} == {(VmState.BUILDING, TaskState.SCHEDULING)}
    assert len({i.reservation_id for i in batch}) == 1
    assert str(batch[0].uuid) == response.json()["server"]["id"]
