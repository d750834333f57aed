"""``POST /os-server-external-events`` per microversion: names by version (``power-update`` 2.76,
``accelerator-request-bound`` 2.82, ``volume-reimaged`` 2.93), per-event codes, and what each event
leaves in the server's actions (as Nova with the libvirt driver: power-update is not supported)."""

import uuid

import pytest

from portal.models import InstanceAction
from tests.factories import InstanceFactory

from .admin_helpers import BASE, ComputeHostFactory, allow_version, v

pytestmark = pytest.mark.integration

URL = f"{BASE}/os-server-external-events"


@pytest.fixture
def server(member):
    return InstanceFactory(project=member.project, user=member.user, host=ComputeHostFactory())


def send(caller, events, version="2.76"):
    return caller.client.post(URL, {"events": events}, format="json", **v(version))


def test_admins_only(member, server):
    response = send(member, [{"name": "network-changed", "server_uuid": str(server.uuid)}])
    assert response.status_code == 403


def test_codes_per_event(admin, server, member):
    unplaced = InstanceFactory(project=member.project, user=member.user, host=None)
    missing = str(uuid.uuid4())
    response = send(
        admin,
        [
            {"name": "network-vif-plugged", "server_uuid": str(server.uuid), "tag": "port1"},
            {"name": "network-changed", "server_uuid": missing},
            {"name": "network-changed", "server_uuid": str(unplaced.uuid)},
            {"name": "power-update", "server_uuid": str(server.uuid)},
        ],
    )
    assert response.status_code == 207
    codes = [(e["server_uuid"], e["code"], e["status"]) for e in response.json()["events"]]
    assert codes == [
        (str(server.uuid), 200, "completed"),
        (missing, 404, "failed"),
        (str(unplaced.uuid), 422, "failed"),
        (str(server.uuid), 400, "failed"),  # power-update needs its tag
    ]
    assert response.json()["events"][0]["tag"] == "port1"


def test_all_accepted_is_200(admin, server):
    response = send(admin, [{"name": "network-changed", "server_uuid": str(server.uuid)}], "2.1")
    assert response.status_code == 200
    assert response.json() == {
        "events": [{"name": "network-changed", "server_uuid": str(server.uuid), "status": "completed", "code": 200}]
    }


@pytest.mark.parametrize(
    "name, before, since",
    [
        ("volume-extended", "2.50", "2.51"),
        ("power-update", "2.75", "2.76"),
        ("accelerator-request-bound", "2.81", "2.82"),
    ],
)
def test_names_arrive_with_their_microversion(monkeypatch, admin, server, name, before, since):
    allow_version(monkeypatch, since)
    event = {"name": name, "server_uuid": str(server.uuid), "tag": "x"}
    assert send(admin, [event], before).status_code == 400
    assert send(admin, [event], since).status_code == 200


@pytest.mark.parametrize(
    "events",
    [
        [],
        [{"name": "network-changed"}],
        [{"name": "network-changed", "server_uuid": "nope"}],
        [{"name": "network-changed", "server_uuid": str(uuid.uuid4()), "status": "done"}],
        [{"name": "network-changed", "server_uuid": str(uuid.uuid4()), "extra": 1}],
        [{"name": "network-changed", "server_uuid": str(uuid.uuid4()), "tag": "t" * 256}],
        ["x"],
    ],
)
def test_bad_bodies_are_400(admin, events):
    response = send(admin, events)
    assert response.status_code == 400
    assert "badRequest" in response.json()


def test_power_update_is_recorded_and_fails_as_with_libvirt(admin, server):
    response = send(admin, [{"name": "power-update", "server_uuid": str(server.uuid), "tag": "POWER_OFF"}])
    assert response.status_code == 200
    action = InstanceAction.objects.get(instance=server, action="stop")
    (event,) = action.events.all()
    assert (event.event, event.result, event.host) == ("compute_power_update", "Error", server.host.name)
    server.refresh_from_db()
    assert (server.vm_state, server.task_state) == ("active", None)  # nothing changed

    # Already running: POWER_ON is a no-op, which succeeds.
    send(admin, [{"name": "power-update", "server_uuid": str(server.uuid), "tag": "POWER_ON"}])
    (event,) = InstanceAction.objects.get(instance=server, action="start").events.all()
    assert event.result == "Success"

    # An unknown power state is dropped without an action.
    send(admin, [{"name": "power-update", "server_uuid": str(server.uuid), "tag": "SLEEP"}])
    assert InstanceAction.objects.filter(instance=server).count() == 2


def test_volume_extended_is_an_action_the_host_cannot_finish(admin, server):
    volume = str(uuid.uuid4())
    assert send(admin, [{"name": "volume-extended", "server_uuid": str(server.uuid), "tag": volume}]).status_code == 200
    (event,) = InstanceAction.objects.get(instance=server, action="extend_volume").events.all()
    assert (event.event, event.result) == ("compute_extend_volume", "Error")
    assert volume in event.details
