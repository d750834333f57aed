"""schemathesis against the compute API's own OpenAPI description (``/compute/openapi.json``): at least
2,000 generated requests over every operation, bodies and parameters both valid and not, and not one
answer may be a 5xx. Every 4xx must be in the OpenStack error envelope.

Deterministic (hypothesis derandomized, no example database) and bounded: a fixed number of examples per
operation, in-process through the WSGI application, inside one rolled-back transaction.
"""

from __future__ import annotations

import time
import uuid

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given

from portal.api.compute.openapi import openapi_document
from portal.models import Aggregate, ComputeHost, InstanceAction, Keypair, Role, ServerGroup
from tests.conftest import Caller, basic_auth
from tests.factories import FlavorFactory, ImageFactory, InstanceFactory

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 30
MIN_REQUESTS = 2000


@pytest.fixture
def wsgi_app():
    # As Django's test client does: the test's transaction must survive each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, settings, tmp_path):
    settings.CLOUD = {**settings.CLOUD, "IMAGE_DIR": tmp_path}
    settings.ALLOWED_HOSTS = ["*"]
    admin = Caller(Role.ADMIN)
    member = Caller(Role.MEMBER)
    project = member.project
    FlavorFactory(flavorid="1", name="m1.tiny", extra_specs={"hw:cpu_policy": "shared"})
    host = ComputeHost.objects.create(name="fuzzhost", last_heartbeat=timezone.now(), vcpus=8, memory_mb=8192)
    image = ImageFactory(owner=project)
    server = InstanceFactory(project=project, user=member.user, host=host, image=image, metadata={"k1": "v"})
    action = InstanceAction.objects.create(
        instance=server, action="create", request_id=f"req-{uuid.uuid4()}", user=member.user, project=project
    )
    keypair = Keypair.objects.create(user=admin.user, name="fuzzkey", public_key="ssh-ed25519 AAAA", fingerprint="f")
    group = ServerGroup.objects.create(project=project, user=member.user, name="g", policy="affinity")
    aggregate = Aggregate.objects.create(name="fuzzagg")
    examples = {
        "server_id": [str(server.uuid)],
        "flavor_id": ["1"],
        "tenant_id": [project.pk, admin.project.pk],
        "name": [keypair.name],
        "group_id": [str(group.uuid)],
        "aggregate_id": [str(aggregate.pk)],
        "hypervisor_id": [str(host.uuid)],
        "pattern": [host.name],
        "service_id": [str(host.uuid)],
        "request_id": [action.request_id],
        "class_name": ["default"],
        "key": ["k1", "hw:cpu_policy"],
        "tag": ["t1"],
        "volume_id": [str(uuid.uuid4())],
        "host_name": [host.name],
        "alias": ["os-keypairs"],
        "before": ["2026-01-15 00:00:00"],
    }
    return admin, examples


def test_no_server_errors_for_generated_requests(world, wsgi_app):
    admin, examples = world
    schema = schemathesis.openapi.from_dict(openapi_document(path_examples=examples))
    schema.app = wsgi_app
    headers = {"Authorization": basic_auth(admin.user.username), "OpenStack-API-Version": "compute latest"}

    sent = 0
    server_errors: list[str] = []
    bad_envelopes: list[str] = []
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 60, len(operations)

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case):
            nonlocal sent
            case.headers = {
                **(case.headers or {}),
                **{k: v for k, v in headers.items() if k not in (case.headers or {})},
            }
            # Each request in a savepoint rolled back after it: one request's writes (a delete of the
            # example server) or a failed statement cannot change what the next one meets.
            savepoint = transaction.savepoint()
            try:
                response = case.call()
            finally:
                transaction.savepoint_rollback(savepoint)
            sent += 1
            where = f"{case.method} {case.formatted_path} {str(case.body)[:200]!r} -> {response.status_code}"
            if response.status_code >= 500:
                server_errors.append(f"{where} {response.text[:300]}")
            elif response.status_code >= 400 and response.headers.get("Content-Type", "").startswith(
                "application/json"
            ):
                body = response.json()
                inner = next(iter(body.values())) if isinstance(body, dict) and len(body) == 1 else None
                if not isinstance(inner, dict) or inner.get("code") != response.status_code or "message" not in inner:
                    bad_envelopes.append(f"{where} {response.text[:200]}")

        exercise()

    elapsed = time.monotonic() - started
    print(f"schemathesis: {sent} requests over {len(operations)} operations in {elapsed:.0f}s")
    assert not server_errors, "\n".join(server_errors[:20])
    assert not bad_envelopes, "\n".join(bad_envelopes[:20])
    assert sent >= MIN_REQUESTS, sent
