"""The live migration tasks through the real worker (``test:///default``): registered, signed, refused
when forged, and reporting with the migration's id."""

import pytest
from celery import current_app

from compute_tasks import rpc
from compute_tasks.rpc import ActionResult, MigrationRef
from tests.integration.compute_tasks import test_compute_worker as worker_tests
from tests.integration.compute_tasks.test_compute_worker_moves import boot

pytestmark = worker_tests.pytestmark

host = worker_tests.host
image = worker_tests.image
broker = worker_tests.broker
control_plane = worker_tests.control_plane
worker = worker_tests.worker


@pytest.mark.parametrize(
    ("task", "action", "error"),
    [
        (rpc.ABORT_LIVE_MIGRATION, "abort_live_migration", "no migration is running"),
        (rpc.ROLLBACK_LIVE_MIGRATION, "rollback_live_migration", "runs on this host"),
    ],
)
def test_unsigned_and_misaddressed_live_migration_tasks_are_refused(worker, host, image, task, action, error):
    conductor, _state_dir, log_path = worker
    request = boot(conductor, host, image)
    queue = rpc.compute_queue(host)

    def forged(request_id):
        return MigrationRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=9, request_id=request_id
        ).to_dict()

    unsigned = forged("unsigned")
    current_app.send_task(task, args=[unsigned, None], queue=queue)
    misaddressed = forged("misaddressed")
    current_app.send_task(
        task, args=[misaddressed, rpc.sign(task, rpc.compute_queue(f"{host}-other"), misaddressed)], queue=queue
    )
    genuine = MigrationRef(
        instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=9, request_id="genuine"
    )
    getattr(rpc, task.split(".", 1)[1])(host, genuine)

    failed = ActionResult.from_dict(conductor.wait_for(rpc.ACTION_FAILED, lambda body: body["action"] == action))
    assert failed.request_id == "genuine" and failed.migration_id == 9 and error in failed.error
    assert not any(body.get("request_id") in ("unsigned", "misaddressed") for _, body in conductor.received)
    assert log_path.read_text().count(f"Refused {task}") == 2


def test_an_undecodable_live_migrate_is_reported_with_its_migration(worker, host, image):
    conductor, _state_dir, _log_path = worker
    request = boot(conductor, host, image)
    body = {"instance_uuid": request.instance_uuid, "migration_id": 10, "request_id": "broken", "_version": "1.0"}
    queue = rpc.compute_queue(host)
    current_app.send_task(rpc.LIVE_MIGRATE, args=[body, rpc.sign(rpc.LIVE_MIGRATE, queue, body)], queue=queue)
    failed = ActionResult.from_dict(
        conductor.wait_for(rpc.ACTION_FAILED, lambda body: body["action"] == "live_migrate")
    )
    assert failed.migration_id == 10 and "malformed LiveMigrateRequest" in failed.error
