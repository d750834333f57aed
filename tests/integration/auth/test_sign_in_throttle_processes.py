"""The sign-in throttle's counts are shared by every API process: two gunicorn servers on one database,
guesses sent to the first, and the second refuses the next one."""

import pytest
import requests

from portal.models import Role
from tests.factories import MembershipFactory
from tests.processes import Cluster, free_port

pytestmark = pytest.mark.integration

PER_USER = 3
SERVERS = "/compute/v2.1/servers"


@pytest.fixture
def two_apis(transactional_db, tmp_path):
    ports = [free_port(), free_port()]
    cluster = Cluster(f"http://127.0.0.1:{ports[0]}", tmp_path)
    try:
        for index, port in enumerate(ports):
            cluster.start_api(
                port, workers=1, threads=2, name=f"api{index}", AUTH_THROTTLE_MAX_FAILURES_PER_USER=str(PER_USER)
            )
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        cluster.stop()


def test_failures_counted_by_one_api_process_hold_in_another(two_apis):
    first, second = two_apis
    victim = MembershipFactory(role=Role.MEMBER).user
    assert requests.get(f"{second}{SERVERS}", auth=(victim.username, "secret"), timeout=30).status_code == 200

    for _ in range(PER_USER):
        assert requests.get(f"{first}{SERVERS}", auth=(victim.username, "guess"), timeout=30).status_code == 401

    # The second process verified the right password a moment ago and has it in its cache; still 429.
    refused = requests.get(f"{second}{SERVERS}", auth=(victim.username, "secret"), timeout=30)
    assert refused.status_code == 429, refused.text
    assert refused.json()["overLimit"]["code"] == 429
    assert requests.get(f"{first}{SERVERS}", auth=(victim.username, "guess"), timeout=30).status_code == 429
