"""The new move tasks through the real worker (``test:///default``): registered, signed, refused when forged."""

import uuid

import pytest
from celery import current_app

from compute_tasks import rpc
from compute_tasks.rpc import ActionResult, BuildRequest, FlavorSpec, InstanceRef
from tests.integration.compute_tasks import test_compute_worker as worker_tests

pytestmark = worker_tests.pytestmark

# The worker tests' fixtures, shared.
host = worker_tests.host
image = worker_tests.image
broker = worker_tests.broker
control_plane = worker_tests.control_plane
worker = worker_tests.worker


def boot(conductor, host, image):
    request = BuildRequest(
        instance_uuid=str(uuid.uuid4()),
        domain_name=f"instance-{uuid.uuid4().hex[:8]}",
        flavor=FlavorSpec(name="m1.tiny", vcpus=1, memory_mb=64, root_gb=1),
        image=image,
    )
    rpc.build_and_run_instance(host, request)
    conductor.wait_for(rpc.INSTANCE_BUILT, lambda body: body["instance_uuid"] == request.instance_uuid)
    return request


@pytest.mark.parametrize(
    ("task", "action"),
    [(rpc.SHELVE_OFFLOAD_INSTANCE, "shelve_offload"), (rpc.UNRESCUE_INSTANCE, "unrescue")],
)
def test_unsigned_and_misaddressed_move_tasks_are_refused(worker, host, image, task, action):
    conductor, state_dir, log_path = worker
    request = boot(conductor, host, image)
    queue = rpc.compute_queue(host)

    def forged(request_id):
        return InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request_id
        ).to_dict()

    unsigned = forged("unsigned")
    current_app.send_task(task, args=[unsigned, None], queue=queue)
    misaddressed = forged("misaddressed")
    current_app.send_task(
        task, args=[misaddressed, rpc.sign(task, rpc.compute_queue(f"{host}-other"), misaddressed)], queue=queue
    )
    genuine = InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id="genuine")
    getattr(rpc, task.split(".", 1)[1])(host, genuine)

    done = ActionResult.from_dict(conductor.wait_for(rpc.ACTION_DONE, lambda body: body["action"] == action))
    assert done.request_id == "genuine"
    assert not any(body.get("request_id") in ("unsigned", "misaddressed") for _, body in conductor.received)
    assert log_path.read_text().count(f"Refused {task}") == 2
    rpc.terminate_instance(host, InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name))
    conductor.wait_for(rpc.ACTION_DONE, lambda body: body["action"] == "terminate")


def test_a_same_host_resize_through_the_worker(worker, host, image):
    conductor, state_dir, log_path = worker
    request = boot(conductor, host, image)
    migration = rpc.MigrationRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=5)

    # The upload goes nowhere that answers, so migrate_disk reports the failed upload, its old disk kept aside.
    rpc.migrate_disk(
        host,
        rpc.MigrateDiskRequest(
            instance_uuid=request.instance_uuid,
            domain_name=request.domain_name,
            migration_id=5,
            image_id="img-m",
            upload_url="http://127.0.0.1:9/upload?sig=secret",
        ),
    )
    moved = ActionResult.from_dict(conductor.wait_for(rpc.ACTION_FAILED))
    assert moved.action == "migrate_disk" and moved.migration_id == 5 and "secret" not in moved.error
    assert (state_dir / "instances" / f"{request.instance_uuid}_resize" / "disk").is_file()

    rpc.finish_revert_migration(
        host,
        rpc.FinishRevertRequest(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=5, power_on=True
        ),
    )
    back = ActionResult.from_dict(
        conductor.wait_for(rpc.ACTION_DONE, lambda b: b["action"] == "finish_revert_migration")
    )
    assert (back.error, back.power_state, back.migration_id) == ("", rpc.RUNNING, 5)
    assert (state_dir / "instances" / request.instance_uuid / "disk").is_file()
    rpc.confirm_migration(host, migration)
    assert conductor.wait_for(rpc.ACTION_DONE, lambda b: b["action"] == "confirm_migration")["error"] == ""
    rpc.terminate_instance(host, InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name))
    conductor.wait_for(rpc.ACTION_DONE, lambda body: body["action"] == "terminate")
