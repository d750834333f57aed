"""The real compute worker in a subprocess, driving libvirt's ``test:///default``, talking through Redis.

The test plays the control plane: it sends tasks with the rpc senders from its own Celery app and reads
the reports the worker sends to the ``conductor`` queue with kombu.
"""

import dataclasses
import hashlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery, current_app
from kombu import Connection, Exchange, Queue

from compute_tasks import rpc, signing
from compute_tasks.rpc import (
    ActionResult,
    BuildFailed,
    BuildRequest,
    CacheImagesRequest,
    ConsoleOutputRequest,
    FlavorSpec,
    Heartbeat,
    ImageSpec,
    InstanceBuilt,
    InstanceRef,
    NicSpec,
)
from portal.services.host_trust import control_plane_public_key, public_key_of
from tests.file_modes import mode_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed"),
]

REPO = Path(__file__).resolve().parents[3]
CELERY = REPO / ".venv" / "bin" / "celery"
BROKER = os.environ.get("COMPUTE_TEST_BROKER_URL", "redis://127.0.0.1:6379/14")
AMQP_BROKER = os.environ.get("COMPUTE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
WAIT = 30.0


def redis_is_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


class Conductor:
    """Reads the conductor queue as the real conductor would, keeping what one host reported; every report
    must carry the host's signature."""

    def __init__(self, broker: str, host: str, public_key):
        self.host = host
        self.public_key = public_key
        self.connection = Connection(broker)
        queue = Queue(rpc.CONDUCTOR_QUEUE, Exchange(rpc.CONDUCTOR_QUEUE, type="direct"), rpc.CONDUCTOR_QUEUE)
        self.queue = self.connection.SimpleQueue(queue)
        self.queue.clear()
        self.received: list[tuple[str, dict]] = []

    def wait_for(self, task_name: str, predicate=lambda body: True, timeout: float = WAIT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.queue.get(timeout=max(deadline - time.monotonic(), 0.1))
            except self.queue.Empty:
                continue
            args, _kwargs, _embed = message.decode()
            message.ack()
            name, body = message.headers["task"], args[0]
            if body.get("host") != self.host:
                continue
            known = {self.host: self.public_key}
            assert signing.verify(name, rpc.CONDUCTOR_QUEUE, body, args[1], known.get).sender == self.host
            self.received.append((name, body))
            if name == task_name and predicate(body):
                return body
        seen = [name for name, _ in self.received]
        raise AssertionError(f"no {task_name} from {self.host} within {timeout}s; saw {seen}")

    def close(self):
        self.queue.close()
        self.connection.release()


class ImageServer:
    def __init__(self, directory: Path):
        handler = type(
            "Handler",
            (http.server.SimpleHTTPRequestHandler,),
            {"log_message": lambda *args: None},
        )
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(directory)))
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}?signature=integration-test"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def host():
    return f"it-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def image(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    base = served / "cirros.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    data = base.read_bytes()
    server = ImageServer(served)
    yield ImageSpec(
        id=f"img-{uuid.uuid4().hex[:8]}",
        url=server.url(base.name),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    server.close()


@pytest.fixture
def broker():
    """The broker the worker and the test talk through (Redis unless a test asks for another)."""
    return BROKER


@pytest.fixture
def control_plane(broker):
    if broker.startswith("redis") and not redis_is_up():
        pytest.fail("Redis is not running on 127.0.0.1:6379")
    previous = current_app._get_current_object()
    app = Celery("control-plane-test", broker=broker, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True)
    app.set_current()
    yield app
    previous.set_current()
    app.close()


@pytest.fixture
def worker(tmp_path, host, control_plane, broker):
    state_dir = tmp_path / "state"
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "COMPUTE_HOST": host,
        "CELERY_BROKER_URL": broker,
        "COMPUTE_DRIVER": "libvirt",
        "COMPUTE_LIBVIRT_URI": "test:///default",
        "COMPUTE_STATE_DIR": str(state_dir),
        "COMPUTE_HEARTBEAT_INTERVAL": "1",
        "COMPUTE_SHUTDOWN_TIMEOUT": "2",
    }
    key = signing.new_private_key()
    signing.HostCredentials.write(
        state_dir / "credentials.json", keys={host: key}, control_plane_public_key=control_plane_public_key()
    )
    conductor = Conductor(broker, host, key.public_key())
    # The test's control plane has no database: it knows this one host's key.
    rpc.use_verifier({host: key.public_key()}.get)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "compute_tasks.worker",
                "worker",
                "-Q",
                rpc.compute_queue(host),
                "-n",
                f"compute@{host}",
                "--concurrency",
                "2",
                "--pool",
                "threads",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "info",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            umask=0o022,  # what most shells give; the host's files must be private regardless
        )
    try:
        yield conductor, state_dir, log_path
    finally:
        rpc.use_verifier(public_key_of)
        conductor.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        with Connection(broker) as connection:
            queue = rpc.compute_queue(host)
            if broker.startswith("redis"):
                client = connection.default_channel.client
                client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            else:
                Queue(queue)(connection.default_channel).delete()


def log_tail(log_path: Path) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])


def test_a_build_is_reported_and_the_host_beats(worker, host, image):
    conductor, state_dir, log_path = worker
    request = BuildRequest(
        instance_uuid=str(uuid.uuid4()),
        domain_name=f"instance-{uuid.uuid4().hex[:8]}",
        flavor=FlavorSpec(name="m1.tiny", vcpus=1, memory_mb=64, root_gb=1),
        image=image,
        nics=[NicSpec(mac="52:54:00:00:00:42", network="user")],
        request_id="req-it-1",
    )
    ref = InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id="req-it-2")

    try:
        first_beat = Heartbeat.from_dict(conductor.wait_for(rpc.HEARTBEAT))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{log_tail(log_path)}") from None
    assert first_beat.hypervisor_type == "TEST"
    assert "test" in first_beat.unknown_domains

    rpc.build_and_run_instance(host, request)
    built = InstanceBuilt.from_dict(conductor.wait_for(rpc.INSTANCE_BUILT))
    assert built.instance_uuid == request.instance_uuid
    assert built.request_id == "req-it-1"
    assert built.power_state == rpc.RUNNING
    assert built.addresses[0]["mac"] == "52:54:00:00:00:42"
    assert (state_dir / "images" / image.id).is_file()
    assert (state_dir / "instances" / request.instance_uuid / "disk").is_file()
    # The worker runs with the umask it was given (022 here); the host's files are private anyway.
    instance_dir = state_dir / "instances" / request.instance_uuid
    directories = [state_dir, state_dir / "images", state_dir / "instances", instance_dir]
    assert [mode_of(path) for path in directories] == [0o700] * 4
    files = [state_dir / "images" / image.id, instance_dir / "disk", instance_dir / "console.log"]
    assert [mode_of(path) for path in files] == [0o600] * 3

    beat = Heartbeat.from_dict(
        conductor.wait_for(
            rpc.HEARTBEAT,
            lambda body: any(d["instance_uuid"] == request.instance_uuid for d in body["domains"]),
        )
    )
    assert {d.instance_uuid: d.power_state for d in beat.domains}[request.instance_uuid] == rpc.RUNNING

    rpc.stop_instance(host, ref)
    stopped = ActionResult.from_dict(conductor.wait_for(rpc.ACTION_DONE, lambda body: body["action"] == "stop"))
    assert stopped.power_state == rpc.SHUTDOWN

    rpc.terminate_instance(host, ref)
    done = ActionResult.from_dict(conductor.wait_for(rpc.ACTION_DONE, lambda body: body["action"] == "terminate"))
    assert (done.instance_uuid, done.request_id, done.error) == (request.instance_uuid, "req-it-2", "")
    assert not (state_dir / "instances" / request.instance_uuid).exists()
    conductor.wait_for(
        rpc.HEARTBEAT, lambda body: all(d["instance_uuid"] != request.instance_uuid for d in body["domains"])
    )


def test_images_named_through_an_aggregate_are_cached_before_any_build(worker, host, image):
    """Compute API 2.81: the host downloads and verifies the image into its cache without building anything;
    an image that fails its checksum is not kept and does not stop the others."""
    _conductor, state_dir, log_path = worker
    broken = ImageSpec(id=f"{image.id}-bad", url=image.url, sha256="0" * 64, size=image.size)
    rpc.cache_images(host, CacheImagesRequest(images=[broken, image], request_id="req-it-cache"))
    cached = state_dir / "images" / image.id
    deadline = time.monotonic() + WAIT
    while not cached.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cached.is_file(), log_tail(log_path)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == image.sha256
    assert mode_of(cached) == 0o600
    assert not (state_dir / "images" / broken.id).exists()
    assert not (state_dir / "instances").exists() or not any((state_dir / "instances").iterdir())


def test_a_failed_build_is_cleaned_up_and_reported(worker, host, image):
    conductor, state_dir, _log_path = worker
    request = BuildRequest(
        instance_uuid=str(uuid.uuid4()),
        domain_name=f"instance-{uuid.uuid4().hex[:8]}",
        flavor=FlavorSpec(name="m1.tiny", vcpus=1, memory_mb=64, root_gb=1),
        image=ImageSpec(id=image.id, url=image.url, sha256="0" * 64, size=image.size),
        request_id="req-it-3",
    )

    rpc.build_and_run_instance(host, request)
    failed = BuildFailed.from_dict(conductor.wait_for(rpc.BUILD_FAILED))

    assert failed.instance_uuid == request.instance_uuid
    assert "sha256" in failed.message
    assert "signature=" not in failed.message + failed.details
    assert failed.reschedulable is False
    assert not (state_dir / "instances" / request.instance_uuid).exists()
    assert not (state_dir / "images" / image.id).exists()


@pytest.mark.parametrize("broker", [BROKER, AMQP_BROKER], ids=["redis", "rabbitmq"])
def test_console_output_is_a_request_and_a_reply_through_the_broker(worker, host, image, broker):
    conductor, state_dir, log_path = worker
    request = BuildRequest(
        instance_uuid=str(uuid.uuid4()),
        domain_name=f"instance-{uuid.uuid4().hex[:8]}",
        flavor=FlavorSpec(name="m1.tiny", vcpus=1, memory_mb=64, root_gb=1),
        image=image,
        request_id="req-it-console",
    )
    rpc.build_and_run_instance(host, request)
    try:
        conductor.wait_for(rpc.INSTANCE_BUILT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{log_tail(log_path)}") from None
    log = state_dir / "instances" / request.instance_uuid / "console.log"
    log.write_bytes(b"first\nsecond\nthird\n")
    ask = ConsoleOutputRequest(instance_uuid=request.instance_uuid, domain_name=request.domain_name, reply_to="")

    # Nova's count: the empty piece after the last newline is the third "line" from the end.
    answer = rpc.get_console_output(host, dataclasses.replace(ask, length=3), timeout=15)
    assert (answer.output, answer.error, answer.host) == ("second\nthird\n", "", host)
    assert rpc.get_console_output(host, ask, timeout=15).output == "first\nsecond\nthird\n"
    unknown = dataclasses.replace(ask, instance_uuid=str(uuid.uuid4()))
    assert "has no domain" in rpc.get_console_output(host, unknown, timeout=15).error
    with pytest.raises(rpc.NoReply):
        rpc.get_console_output(f"{host}-absent", ask, timeout=1)

    # No reply queue is left behind on the broker.
    with Connection(broker) as connection:
        if broker.startswith("redis"):
            assert not connection.default_channel.client.keys("reply.*")
    rpc.terminate_instance(host, InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name))
    conductor.wait_for(rpc.ACTION_DONE, lambda body: body["action"] == "terminate")
