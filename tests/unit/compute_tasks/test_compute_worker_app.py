"""The worker module, imported in a child process: importing it makes its app Celery's default."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]

PROBE = """
import json, threading
import celery
import compute_tasks.worker as worker
from compute_tasks import rpc

seen_in_thread = []
def look():
    seen_in_thread.append(celery.current_app._get_current_object() is worker.app)
thread = threading.Thread(target=look)
thread.start()
thread.join()
conf = worker.app.conf
print(json.dumps({
    "main": worker.app.main,
    "current": celery.current_app._get_current_object() is worker.app,
    "current_in_thread": seen_in_thread[0],
    "tasks": sorted(name for name in worker.app.tasks if not name.startswith("celery.")),
    "broker": conf.broker_url,
    "accept": list(conf.accept_content),
    "serializer": conf.task_serializer,
    "acks_late": conf.task_acks_late,
    "reject_on_worker_lost": conf.task_reject_on_worker_lost,
    "prefetch": conf.worker_prefetch_multiplier,
    "backend": conf.result_backend,
    "retry_on_startup": conf.broker_connection_retry_on_startup,
    "pool": conf.worker_pool,
    "default_queue": conf.task_default_queue,
    # Every task name of the contract that is addressed to hosts: the worker must serve each one.
    "names": [v for k, v in vars(rpc).items() if k.isupper() and isinstance(v, str) and v.startswith("compute.")],
}))
"""


def run_probe(tmp_path, **env):
    environ = {
        **os.environ,
        "COMPUTE_HOST": "hv-probe",
        "COMPUTE_DRIVER": "fake",
        "COMPUTE_STATE_DIR": str(tmp_path),
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/11",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=environ, capture_output=True, text=True, timeout=60
    )


def test_the_app_is_configured_for_at_least_once_delivery(tmp_path):
    done = run_probe(tmp_path)
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)

    assert probe["main"] == "compute"
    assert probe["current"] and probe["current_in_thread"]
    assert probe["tasks"] == sorted(probe["names"])
    assert probe["broker"] == "redis://127.0.0.1:6379/11"
    assert probe["accept"] == ["json"]
    assert probe["serializer"] == "json"
    assert probe["acks_late"] is True
    assert probe["reject_on_worker_lost"] is True
    assert probe["prefetch"] == 1
    assert probe["backend"] is None
    assert probe["retry_on_startup"] is True
    assert probe["pool"] == "threads"
    assert probe["default_queue"] == "compute.hv-probe"


def test_invalid_configuration_stops_the_worker_with_one_clear_line(tmp_path):
    done = run_probe(tmp_path, COMPUTE_VIRT_TYPE="xen")

    assert done.returncode == 1
    assert (
        done.stderr.strip() == "compute worker: invalid configuration: COMPUTE_VIRT_TYPE='xen' is not one of qemu, kvm"
    )
