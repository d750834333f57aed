"""Every answer of every API names its request (``X-Openstack-Request-Id``; the compute API's also
``X-Compute-Request-Id``), errors and unknown URLs included; the id is made by the cloud, never taken from
the client, and it is the instance action's."""

import logging
import uuid

import pytest

from compute_tasks import request_ids
from portal.models import InstanceAction
from tests.factories import FlavorFactory, ImageFactory

pytestmark = pytest.mark.integration

CLIENTS_ID = f"req-{uuid.uuid4()}"
MISSING = uuid.uuid4()


# (family, method, path, body, expected status, authenticated): each API, successes and errors.
ANSWERS = [
    ("compute", "get", "/compute/v2.1/flavors", None, 200, True),
    ("compute", "get", "/compute/v2.1/flavors", None, 401, False),
    ("compute", "get", f"/compute/v2.1/servers/{MISSING}", None, 404, True),
    ("compute", "post", "/compute/v2.1/servers", {"server": {"name": ""}}, 400, True),
    ("compute", "get", f"/compute/v2.1/servers/{MISSING}/os-volume_attachments", None, 404, True),
    ("compute", "get", "/compute/v2.1/no-such-resource", None, 404, True),
    ("image", "get", "/image/v2/images", None, 200, True),
    ("image", "get", f"/image/v2/images/{MISSING}", None, 404, True),
    ("network", "get", "/networking/v2.0/networks", None, 200, True),
    ("network", "get", f"/networking/v2.0/networks/{MISSING}", None, 404, True),
    ("network", "post", "/networking/v2.0/networks", {"network": "not an object"}, 400, True),
    ("network", "get", "/networking/v2.0/no-such-resource", None, 404, True),
    ("identity", "get", "/identity/v3", None, 200, False),
    ("identity", "post", "/identity/v3/auth/tokens", {"auth": {}}, 400, False),
    ("other", "get", "/no-such-page", None, 404, False),
]


def test_every_answer_of_every_api_names_its_own_request(member, client):
    seen = set()
    for family, method, path, body, status, authenticated in ANSWERS:
        caller = member.client if authenticated else client
        kwargs = {"format": "json"} if body is not None and authenticated else {}
        if body is not None and not authenticated:
            kwargs = {"content_type": "application/json"}
        response = getattr(caller, method)(path, body, HTTP_X_OPENSTACK_REQUEST_ID=CLIENTS_ID, **kwargs)
        assert response.status_code == status, (path, response.content)
        request_id = response["X-Openstack-Request-Id"]
        assert request_ids.well_formed(request_id), (path, request_id)
        assert request_id != CLIENTS_ID, path  # a client cannot name the request
        if family == "compute":
            assert response["X-Compute-Request-Id"] == request_id, path
        else:
            assert "X-Compute-Request-Id" not in response, path
        seen.add(request_id)
    assert len(seen) == len(ANSWERS)  # one id per request


def test_the_instance_action_of_a_boot_has_the_answers_request_id(member):
    flavor = FlavorFactory(flavorid="1", name="m1.tiny")
    image = ImageFactory(owner=member.project)
    body = {"server": {"name": "vm1", "imageRef": str(image.id), "flavorRef": flavor.flavorid, "networks": "none"}}
    response = member.client.post("/compute/v2.1/servers", body, format="json", HTTP_X_OPENSTACK_REQUEST_ID=CLIENTS_ID)
    assert response.status_code == 202, response.content
    action = InstanceAction.objects.get(instance__uuid=response.json()["server"]["id"], action="create")
    assert action.request_id == response["X-Compute-Request-Id"] == response["X-Openstack-Request-Id"]


def test_no_request_id_is_left_behind_after_a_request(member):
    member.client.get("/compute/v2.1/flavors")
    assert request_ids.current() is None


def test_djangos_line_about_a_failed_request_names_it(member):
    """Django logs a failed request after the middleware returned; that line is about the request too."""
    records = []
    handler = logging.Handler()
    handler.addFilter(request_ids.RequestIdFilter())
    handler.emit = records.append
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        response = member.client.get(f"/compute/v2.1/servers/{MISSING}")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 404
    assert [r.request_id for r in records] == [response["X-Openstack-Request-Id"]]
