"""50 port creations at once on a subnet with room for exactly 20, over real HTTP to the API under
gunicorn (several processes, several threads each) on PostgreSQL: exactly 20 ports, 20 distinct
addresses, and 30 clean 409 IpAddressGenerationFailure answers. The callers are members of five
projects on one shared network, so no project lock serialises them: only the subnet's does."""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter

import pytest
import requests
from django.db import OperationalError, connection, transaction

from portal.models import IPAllocation, Network, Port, Role, Subnet
from portal.services.networks import network_create, network_delete, subnet_create
from portal.services.ports import port_create
from tests.factories import MembershipFactory
from tests.processes import Cluster, free_port, purge_broker

pytestmark = pytest.mark.integration

CREATES = 50
ROOM = 20
PROJECTS = 5


@pytest.fixture
def api(transactional_db, tmp_path):
    purge_broker()
    port = free_port()
    cluster = Cluster(f"http://127.0.0.1:{port}", tmp_path)
    cluster.start_api(port, workers=4, threads=4)
    yield cluster
    cluster.stop()
    purge_broker()


def test_fifty_concurrent_ports_on_a_subnet_with_room_for_twenty(api):
    admin = MembershipFactory(role=Role.ADMIN)
    network = network_create(project=admin.project, user_is_admin=True, name="crowded", shared=True)
    subnet = subnet_create(
        project=admin.project,
        user_is_admin=True,
        network=network,
        cidr="10.40.0.0/24",
        allocation_pools=[{"start": "10.40.0.10", "end": f"10.40.0.{10 + ROOM - 1}"}],
        enable_dhcp=False,
    )
    members = [MembershipFactory(role=Role.MEMBER) for _ in range(PROJECTS)]

    start = threading.Barrier(CREATES + 1)
    results: list[tuple[int, dict]] = []
    results_lock = threading.Lock()

    def create(index: int):
        session = requests.Session()
        session.auth = (members[index % PROJECTS].user.username, "secret")
        body = {"port": {"network_id": str(network.pk), "name": f"p{index}"}}
        start.wait()
        response = session.post(f"{api.api_url}/networking/v2.0/ports", json=body, timeout=60)
        with results_lock:
            results.append((response.status_code, response.json() if response.content else {}))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(CREATES)]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join(90)

    assert len(results) == CREATES, api.logs()
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: ROOM, 409: CREATES - ROOM}, (statuses, [b for s, b in results if s not in (201, 409)])
    refusals = {body["NeutronError"]["type"] for status, body in results if status == 409}
    assert refusals == {"IpAddressGenerationFailure"}, refusals
    given = [body["port"]["fixed_ips"][0]["ip_address"] for status, body in results if status == 201]
    assert len(set(given)) == ROOM
    pool = {str(ipaddress.ip_address("10.40.0.10") + i) for i in range(ROOM)}
    assert set(given) == pool

    # The database agrees: 20 ports, each address once, all inside the pool.
    held = list(IPAllocation.objects.filter(subnet=subnet).values_list("ip_address", flat=True))
    assert sorted(held) == sorted(given) and len(held) == len(set(held)) == ROOM
    assert Port.objects.filter(network=network).count() == ROOM
    assert Subnet.objects.get(pk=subnet.pk).allocation_pools == [{"start": "10.40.0.10", "end": "10.40.0.29"}]
    assert Network.objects.filter(pk=network.pk).exists()


def test_a_network_is_not_deleted_under_a_port_being_made(transactional_db):
    """A port's transaction holds its network (a share lock) until it commits: a delete meanwhile waits (here:
    gives up after its lock timeout) instead of deleting the network under the new port."""
    member = MembershipFactory(role=Role.MEMBER)
    network = network_create(project=member.project, user_is_admin=False, name="busy")
    made, done = threading.Event(), threading.Event()
    outcome: dict = {}

    def make_port():
        try:
            with transaction.atomic():
                port_create(project=member.project, user_is_admin=False, network=network)
                made.set()
                done.wait(30)
            outcome["port"] = "committed"
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome["port"] = repr(exc)
        finally:
            made.set()
            connection.close()

    def delete_network():
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '300ms'")
                network_delete(network=network)
            outcome["delete"] = "deleted"
        except OperationalError:
            outcome["delete"] = "waited"
        except Exception as exc:  # noqa: BLE001
            outcome["delete"] = repr(exc)
        finally:
            connection.close()

    maker = threading.Thread(target=make_port)
    maker.start()
    assert made.wait(30)
    deleter = threading.Thread(target=delete_network)
    deleter.start()
    deleter.join(30)
    done.set()
    maker.join(30)
    assert outcome == {"port": "committed", "delete": "waited"}, outcome
    assert Port.objects.filter(network=network).count() == 1
