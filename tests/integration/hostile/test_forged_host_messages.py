"""Attacks on the contract between the control plane and the hosts, against real processes: the live API,
a conductor and two compute workers on libvirt's test driver, all on the real broker.

The attacker is anyone who reaches the broker (a compromised host, or a guest that got to the host's
loopback): a rogue Celery client that can put any task with any arguments on any queue, sometimes holding
an enrolled host's key. Each forged message is refused, counted, and changes nothing in the database.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from celery import Celery
from django.conf import settings
from django.db.models import Sum

from compute_tasks import rpc, signing
from portal.models import ComputeHost, HostNetworkState, Instance, MessageRefusal, Network, Port
from portal.services import host_trust
from portal.states import TaskState, VmState
from tests.factories import InstanceFactory
from tests.processes import Cluster, purge_broker, signed_as_host, wait_for_host, wait_until

pytestmark = pytest.mark.integration

HOST_A, HOST_B = "trust-a", "trust-b"
Reason = MessageRefusal.Reason


@pytest.fixture(scope="module")
def cloud(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("trust"))
    cluster.start_conductor()
    # Every build reports its steps, however quick: the reports themselves are what is tested here.
    cluster.start_compute(HOST_A, COMPUTE_BUILD_QUIET_SECONDS="0")
    cluster.start_compute(HOST_B, COMPUTE_BUILD_QUIET_SECONDS="0")
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


@pytest.fixture
def hosts_up(cloud, transactional_db):
    wait_for_host(HOST_A)
    wait_for_host(HOST_B)


@pytest.fixture
def rogue():
    """Anyone with the broker's address."""
    app = Celery("rogue", broker=settings.CELERY_BROKER_URL, set_as_current=False)
    yield app
    app.close()


def send(app: Celery, task: str, queue: str, *args) -> None:
    app.send_task(task, args=list(args), queue=queue)


def refusals(task: str, reason: str) -> int:
    return MessageRefusal.objects.filter(task=task, reason=reason).aggregate(n=Sum("count"))["n"] or 0


def wait_refused(task: str, reason: str, before: int) -> None:
    wait_until(lambda: refusals(task, reason) > before, 30, message=f"the conductor to refuse {task} ({reason})")


def spawning_on(host: str) -> Instance:
    """Another project's instance being built on ``host``."""
    return InstanceFactory(
        host=ComputeHost.objects.get(name=host), vm_state=VmState.BUILDING, task_state=TaskState.SPAWNING
    )


def built(instance: Instance, host: str, **fields) -> dict:
    values = {
        "instance_uuid": str(instance.uuid),
        "host": host,
        "request_id": "req-forged",
        "power_state": rpc.RUNNING,
        "vnc_host": "127.0.0.1",
        "vnc_port": 5999,
        **fields,
    }
    return rpc.InstanceBuilt(**values).to_dict()


def unchanged(instance: Instance) -> bool:
    row = Instance.objects.get(pk=instance.pk)
    return (row.vm_state, row.task_state, row.vnc_port) == (VmState.BUILDING, TaskState.SPAWNING, None)


def test_an_unsigned_build_report_from_a_rogue_changes_nothing(hosts_up, rogue):
    victim = spawning_on(HOST_A)
    before = refusals(rpc.INSTANCE_BUILT, Reason.UNSIGNED)
    send(rogue, rpc.INSTANCE_BUILT, rpc.CONDUCTOR_QUEUE, built(victim, HOST_A, vnc_host="127.0.0.1", vnc_port=22))
    wait_refused(rpc.INSTANCE_BUILT, Reason.UNSIGNED, before)
    assert unchanged(victim)


def test_a_report_signed_with_a_key_nobody_enrolled_is_refused(hosts_up, rogue):
    victim = spawning_on(HOST_A)
    message = built(victim, HOST_A)
    forged = signing.Signer(HOST_A, signing.new_private_key()).sign(rpc.INSTANCE_BUILT, rpc.CONDUCTOR_QUEUE, message)
    before = refusals(rpc.INSTANCE_BUILT, Reason.BAD_SIGNATURE)
    send(rogue, rpc.INSTANCE_BUILT, rpc.CONDUCTOR_QUEUE, message, forged)
    wait_refused(rpc.INSTANCE_BUILT, Reason.BAD_SIGNATURE, before)
    assert unchanged(victim)


def test_an_enrolled_host_cannot_report_for_another_host(hosts_up, rogue):
    """Host B holds its own valid key and signs a report that names host A."""
    victim = spawning_on(HOST_A)
    message = built(victim, HOST_A)
    before = refusals(rpc.INSTANCE_BUILT, Reason.NOT_ITS_OWN)
    send(rogue, rpc.INSTANCE_BUILT, rpc.CONDUCTOR_QUEUE, message, signed_as_host(HOST_B, rpc.INSTANCE_BUILT, message))
    wait_refused(rpc.INSTANCE_BUILT, Reason.NOT_ITS_OWN, before)
    assert unchanged(victim)


def test_an_enrolled_host_cannot_finish_another_hosts_build_in_its_own_name(hosts_up, rogue):
    """Host B reports, as itself, that it built an instance placed on host A: believed as B's word about
    B only, so A's instance stays as it was."""
    victim = spawning_on(HOST_A)
    message = built(victim, HOST_B)
    terminates = cloud_log(HOST_B).count(rpc.TERMINATE_INSTANCE)
    send(rogue, rpc.INSTANCE_BUILT, rpc.CONDUCTOR_QUEUE, message, signed_as_host(HOST_B, rpc.INSTANCE_BUILT, message))
    # The conductor answers such a report by asking B (and only B) to remove any domain of it.
    wait_until(
        lambda: cloud_log(HOST_B).count(rpc.TERMINATE_INSTANCE) > terminates,
        30,
        message="the conductor to tell host B to remove what it claims to have built",
    )
    assert unchanged(victim)


def test_a_forged_heartbeat_cannot_rewrite_another_host(hosts_up, rogue):
    """Host B signs a heartbeat in host A's name: no resources, and a volume connector of its choosing."""
    row = ComputeHost.objects.get(name=HOST_A)
    beat = rpc.Heartbeat(
        host=HOST_A,
        sent_at=time.time(),
        vcpus=0,
        memory_mb=0,
        disk_gb=0,
        hypervisor_type="EVIL",
        hypervisor_version=1,
        cpu_arch="x86_64",
        volume_connector={"ip": "198.51.100.7", "initiator": "iqn.evil"},
    ).to_dict()
    before = refusals(rpc.HEARTBEAT, Reason.NOT_ITS_OWN)
    send(rogue, rpc.HEARTBEAT, rpc.CONDUCTOR_QUEUE, beat, signed_as_host(HOST_B, rpc.HEARTBEAT, beat))
    wait_refused(rpc.HEARTBEAT, Reason.NOT_ITS_OWN, before)
    after = ComputeHost.objects.get(name=HOST_A)
    assert after.hypervisor_type != "EVIL" and after.vcpus == row.vcpus
    assert after.volume_connector.get("initiator") != "iqn.evil"


def test_a_replayed_heartbeat_changes_nothing(hosts_up, rogue):
    """A beat of host A recorded a while ago (here: signed a minute ago with A's key), sent again: older than
    the newest beat believed from A, so it is refused and A's row keeps what A said last."""
    beat = rpc.Heartbeat(
        host=HOST_A, sent_at=time.time() - 60, vcpus=1, memory_mb=1, disk_gb=1, hypervisor_type="OLD",
        hypervisor_version=1, cpu_arch="x86_64",
    ).to_dict()  # fmt: skip
    recorded = signed_as_host(HOST_A, rpc.HEARTBEAT, beat, now=time.time() - 60)
    before = refusals(rpc.HEARTBEAT, Reason.REPLAY)
    send(rogue, rpc.HEARTBEAT, rpc.CONDUCTOR_QUEUE, beat, recorded)
    wait_refused(rpc.HEARTBEAT, Reason.REPLAY, before)
    assert ComputeHost.objects.get(name=HOST_A).hypervisor_type != "OLD"


def test_a_heartbeat_under_a_new_name_registers_no_host(hosts_up, rogue):
    name = f"intruder-{uuid.uuid4().hex[:6]}"
    beat = rpc.Heartbeat(
        host=name, sent_at=time.time(), vcpus=64, memory_mb=1 << 20, disk_gb=1 << 10, hypervisor_type="QEMU",
        hypervisor_version=1, cpu_arch="x86_64",
    ).to_dict()  # fmt: skip
    auth = signing.Signer(name, signing.new_private_key()).sign(rpc.HEARTBEAT, rpc.CONDUCTOR_QUEUE, beat)
    before = refusals(rpc.HEARTBEAT, Reason.UNKNOWN_SENDER)
    send(rogue, rpc.HEARTBEAT, rpc.CONDUCTOR_QUEUE, beat, auth)
    send(rogue, rpc.HEARTBEAT, rpc.CONDUCTOR_QUEUE, beat)  # and unsigned
    wait_refused(rpc.HEARTBEAT, Reason.UNKNOWN_SENDER, before)
    assert not ComputeHost.objects.filter(name=name).exists()
    assert MessageRefusal.objects.filter(sender=host_trust.UNKNOWN_SENDER, task=rpc.HEARTBEAT).exists()


def test_a_replayed_report_is_refused(hosts_up, rogue):
    """A report the attacker recorded off the broker, sent again when the instance waits for the same
    kind of result once more."""
    instance = InstanceFactory(
        host=ComputeHost.objects.get(name=HOST_B), vm_state=VmState.ACTIVE, task_state=TaskState.POWERING_OFF
    )
    message = rpc.ActionResult(
        instance_uuid=str(instance.uuid), host=HOST_B, request_id="", action="stop", power_state=rpc.SHUTDOWN
    ).to_dict()
    recorded = signed_as_host(HOST_B, rpc.ACTION_DONE, message)
    send(rogue, rpc.ACTION_DONE, rpc.CONDUCTOR_QUEUE, message, recorded)
    wait_until(
        lambda: Instance.objects.get(pk=instance.pk).vm_state == VmState.STOPPED, 30, message="the first delivery"
    )
    Instance.objects.filter(pk=instance.pk).update(vm_state=VmState.ACTIVE, task_state=TaskState.POWERING_OFF)
    before = refusals(rpc.ACTION_DONE, Reason.REPLAY)
    send(rogue, rpc.ACTION_DONE, rpc.CONDUCTOR_QUEUE, message, recorded)
    wait_refused(rpc.ACTION_DONE, Reason.REPLAY, before)
    row = Instance.objects.get(pk=instance.pk)
    assert (row.vm_state, row.task_state) == (VmState.ACTIVE, TaskState.POWERING_OFF)


def test_a_revoked_host_is_not_believed(hosts_up, rogue):
    name = f"revoked-{uuid.uuid4().hex[:6]}"
    message = rpc.ActionResult(
        instance_uuid=str(uuid.uuid4()), host=name, request_id="", action="stop", power_state=rpc.SHUTDOWN
    ).to_dict()
    auth = signed_as_host(name, rpc.ACTION_DONE, message)
    host_trust.host_credentials_revoke(host=ComputeHost.objects.get(name=name))
    before = refusals(rpc.ACTION_DONE, Reason.UNKNOWN_SENDER)
    send(rogue, rpc.ACTION_DONE, rpc.CONDUCTOR_QUEUE, message, auth)
    wait_refused(rpc.ACTION_DONE, Reason.UNKNOWN_SENDER, before)


def test_a_host_cannot_point_a_console_elsewhere(hosts_up, rogue):
    """Its own instance, its own key: but the console address is not the one it was enrolled with."""
    instance = spawning_on(HOST_A)
    message = built(instance, HOST_A, vnc_host="10.255.0.1", vnc_port=6379)
    before = refusals(rpc.INSTANCE_BUILT, Reason.NOT_ITS_OWN)
    send(rogue, rpc.INSTANCE_BUILT, rpc.CONDUCTOR_QUEUE, message, signed_as_host(HOST_A, rpc.INSTANCE_BUILT, message))
    wait_refused(rpc.INSTANCE_BUILT, Reason.NOT_ITS_OWN, before)
    assert unchanged(instance)


def _port_on(host: str) -> Port:
    """Another project's port, bound to ``host`` and not plugged yet."""
    network = Network.objects.create(name="victim-net", segmentation_id=4000 + Network.objects.count())
    return Port.objects.create(
        network=network, mac_address="fa:16:3e:aa:00:01", host=ComputeHost.objects.get(name=host), vif_type="bridge"
    )


def test_a_host_cannot_say_what_another_hosts_network_is(hosts_up, rogue):
    """Host B signs a data-plane report in host A's name: refused. As itself, it claims A's port is plugged:
    believed about B's ports only, so A's port stays DOWN."""
    victim = _port_on(HOST_A)
    forged = rpc.NetworkStateApplied(host=HOST_A, generation=10**9, plugged_ports=[str(victim.pk)]).to_dict()
    before = refusals(rpc.NETWORK_STATE_APPLIED, Reason.NOT_ITS_OWN)
    signed = signed_as_host(HOST_B, rpc.NETWORK_STATE_APPLIED, forged)
    send(rogue, rpc.NETWORK_STATE_APPLIED, rpc.CONDUCTOR_QUEUE, forged, signed)
    wait_refused(rpc.NETWORK_STATE_APPLIED, Reason.NOT_ITS_OWN, before)

    # As itself, about the plan it was last sent (a report of a plan never issued is not believed at all),
    # marked so the test knows its report was the one taken.
    HostNetworkState.objects.get_or_create(host=ComputeHost.objects.get(name=HOST_B))
    generation = HostNetworkState.objects.get(host__name=HOST_B).generation
    own = rpc.NetworkStateApplied(
        host=HOST_B, generation=generation, plugged_ports=[str(victim.pk)], drift=["rogue report"]
    ).to_dict()
    send(
        rogue,
        rpc.NETWORK_STATE_APPLIED,
        rpc.CONDUCTOR_QUEUE,
        own,
        signed_as_host(HOST_B, rpc.NETWORK_STATE_APPLIED, own),
    )
    wait_until(
        lambda: "rogue report" in HostNetworkState.objects.get(host__name=HOST_B).drift,
        30,
        message="B's own report taken",
    )
    victim.refresh_from_db()
    assert victim.status == Port.Status.DOWN


def test_the_control_plane_only_tasks_refuse_hosts(hosts_up, rogue):
    message = rpc.ScheduleRequest(instance_uuid=str(uuid.uuid4())).to_dict()
    before = refusals(rpc.SCHEDULE_AND_BUILD, Reason.NOT_ALLOWED)
    send(
        rogue,
        rpc.SCHEDULE_AND_BUILD,
        rpc.CONDUCTOR_QUEUE,
        message,
        signed_as_host(HOST_B, rpc.SCHEDULE_AND_BUILD, message),
    )
    wait_refused(rpc.SCHEDULE_AND_BUILD, Reason.NOT_ALLOWED, before)


# --- the hosts' side: only the control plane's messages, for this host, once -----------------------------


def cloud_log(host: str) -> str:
    return _cloud.processes[f"compute-{host}"].output()


_cloud: Cluster


@pytest.fixture(autouse=True)
def _remember_cloud(cloud):
    global _cloud
    _cloud = cloud


def test_a_host_acts_only_on_the_control_planes_messages_for_itself(
    hosts_up, api_user, tiny_flavor, small_image, rogue
):
    body = {"server": {"name": "kept", "imageRef": str(small_image.id), "flavorRef": "1", "networks": "none"}}
    response = api_user.post("/servers", body)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    wait_until(lambda: api_user.server(server_id)["status"] == "ACTIVE", 60, message="the server to be ACTIVE")
    host = Instance.objects.get(uuid=server_id).host.name
    other = HOST_B if host == HOST_A else HOST_A
    queue = rpc.compute_queue(host)
    ref = rpc.InstanceRef(instance_uuid=server_id, domain_name=f"instance-{server_id}").to_dict()

    send(rogue, rpc.TERMINATE_INSTANCE, queue, ref)  # unsigned
    send(rogue, rpc.TERMINATE_INSTANCE, queue, ref, signed_as_host(other, rpc.TERMINATE_INSTANCE, ref, queue=queue))
    # The control plane's own signature, on a message for the other host, moved to this host's queue.
    for_other = rpc.sign(rpc.TERMINATE_INSTANCE, rpc.compute_queue(other), ref)
    send(rogue, rpc.TERMINATE_INSTANCE, queue, ref, for_other)
    wait_until(lambda: cloud_log(host).count(f"Refused {rpc.TERMINATE_INSTANCE}") >= 3, 30, message="three refusals")
    time.sleep(3)  # three heartbeats: a domain that went away would show as SHUTOFF by now
    assert api_user.server(server_id)["status"] == "ACTIVE"
    assert Instance.objects.get(uuid=server_id).power_state == rpc.RUNNING


def test_a_host_does_not_act_twice_on_one_message(hosts_up, api_user, tiny_flavor, small_image, rogue):
    body = {"server": {"name": "replayed", "imageRef": str(small_image.id), "flavorRef": "1", "networks": "none"}}
    server_id = api_user.post("/servers", body).json()["server"]["id"]
    wait_until(lambda: api_user.server(server_id)["status"] == "ACTIVE", 60, message="the server to be ACTIVE")
    host = Instance.objects.get(uuid=server_id).host.name
    queue = rpc.compute_queue(host)
    stop = rpc.InstanceRef(instance_uuid=server_id, domain_name=f"instance-{server_id}").to_dict()
    recorded = rpc.sign(rpc.STOP_INSTANCE, queue, stop)  # as the control plane once sent it
    send(rogue, rpc.STOP_INSTANCE, queue, stop, recorded)
    wait_until(lambda: api_user.server(server_id)["status"] == "SHUTOFF", 30, message="the first stop")
    assert api_user.post(f"/servers/{server_id}/action", {"os-start": None}).status_code == 202
    wait_until(lambda: api_user.server(server_id)["status"] == "ACTIVE", 30, message="the start")

    send(rogue, rpc.STOP_INSTANCE, queue, stop, recorded)
    wait_until(lambda: "a replay of a message already acted on" in cloud_log(host), 30, message="the host to refuse")
    time.sleep(3)
    assert api_user.server(server_id)["status"] == "ACTIVE"


# --- a build's progress: a host speaks only for the builds placed on it, and only while they build --------


def progress_report(instance: Instance, host: str, step: str = rpc.BUILD_STEP_BLOCK_DEVICE_MAPPING) -> dict:
    return rpc.BuildProgress(
        instance_uuid=str(instance.uuid), host=host, request_id="req-progress", step=step, percent=40
    ).to_dict()


def handled(rogue: Celery, message: dict, signer: str) -> None:
    """Send a build progress report signed by ``signer`` and wait until the conductor has taken it."""
    task_id = str(uuid.uuid4())
    auth = signed_as_host(signer, rpc.BUILD_PROGRESS, message)
    rogue.send_task(rpc.BUILD_PROGRESS, args=[message, auth], queue=rpc.CONDUCTOR_QUEUE, task_id=task_id)
    wait_until(
        lambda: f"[{task_id}] succeeded" in conductor_log(),
        30,
        message="the conductor to take the progress report",
    )


def steps(instance: Instance) -> tuple:
    row = Instance.objects.get(pk=instance.pk)
    return row.vm_state, row.task_state, row.step_progress


def test_a_host_cannot_report_the_progress_of_a_build_placed_on_another(hosts_up, rogue):
    """Host B, with its own key and in its own name, says how A's build is going: not believed. The same
    report from A is."""
    victim = InstanceFactory(
        host=ComputeHost.objects.get(name=HOST_A), vm_state=VmState.BUILDING, task_state=TaskState.NETWORKING
    )
    handled(rogue, progress_report(victim, HOST_B), HOST_B)
    assert steps(victim) == (VmState.BUILDING, TaskState.NETWORKING, 0)

    handled(rogue, progress_report(victim, HOST_A), HOST_A)
    assert steps(victim) == (VmState.BUILDING, TaskState.BLOCK_DEVICE_MAPPING, 40)


@pytest.mark.parametrize(
    ("vm_state", "task_state"),
    [
        (VmState.ACTIVE, None),  # built already
        (VmState.BUILDING, TaskState.DELETING),  # deleted while it was built
        (VmState.SHELVED_OFFLOADED, TaskState.SPAWNING),  # an unshelve: not a build
    ],
)
def test_progress_of_a_server_not_being_built_changes_nothing(hosts_up, rogue, vm_state, task_state):
    instance = InstanceFactory(host=ComputeHost.objects.get(name=HOST_A), vm_state=vm_state, task_state=task_state)
    handled(rogue, progress_report(instance, HOST_A), HOST_A)
    handled(rogue, progress_report(instance, HOST_A, rpc.BUILD_STEP_SPAWNING), HOST_A)
    # Only the task is looked at: the host's heartbeat may meanwhile sync the power of a server it lacks.
    assert steps(instance)[1:] == (task_state, 0)


def test_a_real_build_reports_its_steps_signed_and_believed(hosts_up, api_user, tiny_flavor, small_image):
    """A boot on a compute worker: the host reports the disks' step, the image's percent and the spawn,
    each signed as itself and taken by the conductor, none refused; the server ends ACTIVE at 100."""

    def taken() -> int:
        return len(re.findall(rf"Task {re.escape(rpc.BUILD_PROGRESS)}\[[0-9a-f-]+\] succeeded", conductor_log()))

    before, refused = taken(), refusals(rpc.BUILD_PROGRESS, Reason.NOT_ITS_OWN)
    body = {"server": {"name": "stepped", "imageRef": str(small_image.id), "flavorRef": "1", "networks": "none"}}
    server_id = api_user.post("/servers", body).json()["server"]["id"]
    wait_until(lambda: api_user.server(server_id)["status"] == "ACTIVE", 60, message="the server to be ACTIVE")
    # The disks' step begun, the image whole, the spawn begun: at least three reports.
    wait_until(lambda: taken() >= before + 3, 30, message="the build's progress reports")
    assert refusals(rpc.BUILD_PROGRESS, Reason.NOT_ITS_OWN) == refused
    server = api_user.server(server_id)
    assert (server["progress"], server["OS-EXT-STS:task_state"]) == (100, None)


def conductor_log() -> str:
    return _cloud.processes["conductor"].output()
