"""The cloud's processes under supervision, started as ``make demo`` starts them (scripts/supervision.py
with the Procfile).

Promise: a compute worker killed with SIGKILL is started again and heartbeats again, and the API, the
conductor, beat and the console proxy keep serving meanwhile, in the same processes. A process that
keeps dying at start is retried with a growing delay, then left stopped, and the others keep running.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime

import pytest
import requests
from django.utils import timezone

from portal.models import ComputeHost
from scripts.supervision import ROOT, Policy, Program, Supervisor, programs_for
from tests.processes import (
    Cluster,
    close_other_sessions,
    enroll,
    forget_hosts,
    free_port,
    purge_broker,
    wait_for_host,
    wait_until,
)

pytestmark = pytest.mark.integration

HOST = "supervisedhost"


@pytest.fixture
def supervised_cloud(transactional_db, tmp_path):
    """Every process of the Procfile under supervisord, with the test database and broker."""
    purge_broker()
    api_port, proxy_port = free_port(), free_port()
    cluster = Cluster(f"http://127.0.0.1:{api_port}", tmp_path)  # for its environment only
    state_dir = tmp_path / "compute" / HOST
    enroll([HOST], state_dir / "credentials.json")
    env = {
        **cluster.env,
        "DJANGO_SETTINGS_MODULE": "tests.cluster_settings",
        "API_LISTEN": f"127.0.0.1:{api_port}",
        "CONSOLEPROXY_LISTEN": f"127.0.0.1:{proxy_port}",
        "CONSOLEAUTH_URL": f"{cluster.api_url}/internal/consoleauth/",
    }
    host_settings = {
        "COMPUTE_DRIVER": "libvirt",
        "COMPUTE_LIBVIRT_URI": "test:///default",
        "COMPUTE_STATE_DIR": str(state_dir),
        "COMPUTE_CREDENTIALS": str(state_dir / "credentials.json"),
        "COMPUTE_HEARTBEAT_INTERVAL": "1",
    }
    programs = programs_for(ROOT / "Procfile", {HOST: host_settings})
    supervisor = Supervisor(programs, tmp_path / "supervisor", env).start(
        stdout=(tmp_path / "supervisord.out").open("ab")
    )
    supervisor.api_url = cluster.api_url
    try:
        yield supervisor
    finally:
        supervisor.stop()
        close_other_sessions()
        forget_hosts({HOST})
        purge_broker()


def running_pids(supervisor: Supervisor) -> dict[str, int]:
    return {name: info["pid"] for name, info in supervisor.processes().items() if info["statename"] == "RUNNING"}


def test_a_killed_compute_worker_comes_back_and_the_rest_keep_serving(supervised_cloud, admin_session):
    supervisor = supervised_cloud
    servers_url = f"{supervisor.api_url}/compute/v2.1/servers"
    wait_until(lambda: _answers(admin_session, servers_url), 60, message="the API")
    wait_for_host(HOST)
    wait_until(lambda: len(running_pids(supervisor)) == 5, 30, message="every program RUNNING")
    before = running_pids(supervisor)
    assert set(before) == {"api", "conductor", "beat", "compute", "consoleproxy"}

    killed_at = timezone.now()
    os.killpg(before["compute"], signal.SIGKILL)  # the worker and its pool: no cleanup, no goodbye
    wait_until(lambda: not _alive(before["compute"]), 10, message="the worker to die")

    # While it is away and coming back, the API answers every request.
    answered = 0
    deadline = time.monotonic() + 60
    while running_pids(supervisor).get("compute") in (None, before["compute"]):
        assert time.monotonic() < deadline, f"compute was not started again: {supervisor.processes()['compute']}"
        assert _answers(admin_session, servers_url)
        answered += 1
        time.sleep(0.2)
    assert answered >= 1

    after = running_pids(supervisor)
    assert after["compute"] != before["compute"]
    assert {name: pid for name, pid in after.items() if name != "compute"} == {
        name: pid for name, pid in before.items() if name != "compute"
    }
    # The new worker speaks for the host again.
    wait_until(
        lambda: ComputeHost.objects.filter(name=HOST, last_heartbeat__gt=killed_at).exists(),
        60,
        message="a heartbeat from the restarted worker",
    )
    assert _answers(admin_session, servers_url)
    log = (supervisor.directory.parent / "supervisord.out").read_text()
    assert "exited: compute (terminated by SIGKILL; not expected)" in log


def test_a_process_that_keeps_failing_backs_off_and_the_others_keep_running(tmp_path):
    programs = [Program("steady", "sleep 120"), Program("broken", "sh -c 'exit 3'")]
    policy = Policy(start_seconds=1, start_retries=2, stop_wait_seconds=5)
    supervisor = Supervisor(programs, tmp_path / "supervisor", dict(os.environ), policy)
    supervisor.start(stdout=(tmp_path / "supervisord.out").open("ab"))
    try:
        wait_until(lambda: supervisor.processes()["steady"]["statename"] == "RUNNING", 10, message="steady")
        steady = supervisor.processes()["steady"]["pid"]
        wait_until(lambda: supervisor.processes()["broken"]["statename"] == "FATAL", 30, message="broken to give up")
        log = (tmp_path / "supervisord.out").read_text()
        spawns = [
            datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            for line in log.splitlines()
            if "spawned: 'broken'" in line
        ]
        # Three tries with a growing delay between them (1 s, then 2 s), not a tight loop.
        assert len(spawns) == 3, log
        gaps = [(later - earlier).total_seconds() for earlier, later in zip(spawns, spawns[1:], strict=False)]
        assert 0.9 <= gaps[0] < gaps[1], gaps
        assert "gave up: broken entered FATAL state" in log
        assert supervisor.processes()["steady"] == {**supervisor.processes()["steady"], "pid": steady}
        assert supervisor.processes()["steady"]["statename"] == "RUNNING"
    finally:
        supervisor.stop()
    assert not supervisor.alive()


def _answers(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
