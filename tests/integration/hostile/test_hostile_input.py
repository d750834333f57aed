"""Hostile input, written by hand: malformed and hostile JSON, wrong content types, huge bodies, unicode
and overlong names, negative and overflowing numbers, unknown actions, bad ids. Every answer is a 4xx
in the OpenStack error envelope, never a 5xx; and where the input is fine (unicode) it is kept intact.

Wrong content types get 415 (``badMediaType``), as Nova answers them.
"""

import json
import uuid

import pytest
from django.conf import settings

from portal.models import Instance, Role
from tests.conftest import Caller
from tests.factories import FlavorFactory, ImageFactory, InstanceFactory

pytestmark = pytest.mark.integration

V = {"HTTP_OPENSTACK_API_VERSION": "compute 2.47"}


@pytest.fixture
def setup(member):
    FlavorFactory(flavorid="1", name="m1.tiny")
    image = ImageFactory(owner=member.project)
    server = InstanceFactory(project=member.project, user=member.user, image=image)
    return member, image, server


def raw(caller, method, path, body, content_type="application/json", **extra):
    return getattr(caller.client, method)(path, data=body, content_type=content_type, **V, **extra)


def assert_envelope(response, *statuses):
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    body = response.json()
    assert len(body) == 1, body
    (inner,) = body.values()
    assert inner["code"] == response.status_code and inner["message"], body
    return inner["message"]


def boot_body(image, **server):
    return {"server": {"name": "vm", "imageRef": str(image.id), "flavorRef": "1", "networks": "none", **server}}


@pytest.mark.parametrize(
    "body",
    [
        b'{"server": ',
        b"{'server': {}}",
        b"\xff\xfe\x00garbage",
        b"",
        b"null",
        b"[]",
        b'"server"',
        b"1e999999",
        b'{"server": NaN}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
    ids=[
        "truncated",
        "single-quotes",
        "not-utf8",
        "empty",
        "null",
        "list",
        "string",
        "huge-exponent",
        "nan",
        "deep-arrays",
        "deep-objects",
    ],
)
def test_malformed_json_is_400(setup, body):
    member, _, _ = setup
    assert_envelope(raw(member, "post", "/compute/v2.1/servers", body), 400)
    assert_envelope(raw(member, "post", f"/compute/v2.1/servers/{uuid.uuid4()}/action", body), 400, 404)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x", "bogus"])
def test_wrong_content_type_is_415(setup, content_type):
    member, image, _ = setup
    response = raw(member, "post", "/compute/v2.1/servers", json.dumps(boot_body(image)), content_type)
    assert_envelope(response, 415)
    assert not Instance.objects.filter(name="vm").exists()


def test_huge_body_is_413(setup):
    member, image, _ = setup
    padding = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024)
    body = json.dumps(boot_body(image, metadata={"k": padding}))
    assert_envelope(raw(member, "post", "/compute/v2.1/servers", body), 413)
    # Declared larger than it is, or streamed without a length: refused all the same.
    assert_envelope(raw(member, "post", "/compute/v2.1/servers", body, CONTENT_LENGTH=str(len(body) * 10)), 400, 413)


def test_unicode_names_are_kept(setup):
    member, image, _ = setup
    name = "сервер-数据-💥-ǅ"
    response = member.client.post("/compute/v2.1/servers", boot_body(image, name=name), format="json", **V)
    assert response.status_code == 202, response.content
    shown = member.client.get(f"/compute/v2.1/servers/{response.json()['server']['id']}", **V).json()["server"]
    assert shown["name"] == name


@pytest.mark.parametrize(
    "name",
    ["x" * 256, "", " leading", "trailing ", "nul\x00byte", "bell\x07", "new\nline", None, ["a"], {"a": 1}],
)
def test_bad_names_are_400(setup, name):
    member, image, _ = setup
    response = member.client.post("/compute/v2.1/servers", boot_body(image, name=name), format="json", **V)
    assert_envelope(response, 400)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_count", -1),
        ("min_count", 0),
        ("max_count", 10**30),
        ("max_count", 2**63),
        ("min_count", 1.5),
        ("min_count", "many"),
        ("flavorRef", "9" * 5000),
        ("imageRef", "not-a-uuid"),
        ("metadata", {"k" * 256: "v"}),
        ("metadata", {"k": "v" * 256}),
        ("metadata", {"k": 1}),
        ("user_data", "not base64!"),
        ("availability_zone", "\x00"),
    ],
)
def test_bad_server_fields_are_400(setup, field, value):
    member, image, _ = setup
    response = member.client.post("/compute/v2.1/servers", boot_body(image, **{field: value}), format="json", **V)
    assert_envelope(response, 400)
    assert not Instance.objects.filter(name="vm").exists()


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=99999999999999999999999999",
        "limit=abc",
        "marker=nosuchmarker",
        "status=NOTASTATUS",
        "name=(unclosed",
        "changes-since=yesterday",
        "name=%00",
    ],
)
def test_bad_list_queries_are_400(setup, query):
    member, _, _ = setup
    assert_envelope(member.client.get(f"/compute/v2.1/servers/detail?{query}", **V), 400)


@pytest.mark.parametrize("query", ["minRam=-5", "minDisk=1e99", "limit=2147483648", "sort_key=drop", "marker=%00"])
def test_bad_flavor_queries_are_400(setup, query):
    member, _, _ = setup
    assert_envelope(member.client.get(f"/compute/v2.1/flavors/detail?{query}", **V), 400)


@pytest.mark.parametrize(
    "body",
    [
        {"os-frobnicate": None},
        {"os-start": None, "os-stop": None},
        {},
        {"reboot": {"type": "GENTLE"}},
        {"reboot": "HARD"},
        {"\x00": None},
        {"x" * 10_000: None},
    ],
)
def test_unknown_or_malformed_actions_are_400(setup, body):
    member, _, server = setup
    response = member.client.post(f"/compute/v2.1/servers/{server.uuid}/action", body, format="json", **V)
    assert_envelope(response, 400)


@pytest.mark.parametrize(
    "path",
    [
        "/compute/v2.1/servers/not-a-uuid",
        f"/compute/v2.1/servers/{uuid.uuid4()}",
        "/compute/v2.1/servers/%00",
        "/compute/v2.1/servers/" + "9" * 4000,
        f"/compute/v2.1/servers/{uuid.uuid4()}/os-instance-actions",
        "/compute/v2.1/flavors/%00",
        "/compute/v2.1/os-keypairs/%00",
        "/compute/v2.1/os-server-groups/not-a-uuid",
        "/compute/v2.1/no-such-resource",
        "/image/v2/images/not-a-uuid",
        f"/image/v2/images/{uuid.uuid4()}",
        "/image/v2/images/%00",
    ],
)
def test_bad_ids_are_404(setup, path):
    member, _, _ = setup
    nul = "%00" in path  # a NUL character is invalid input before it is an unknown id
    assert_envelope(member.client.get(path, **V), 400 if nul else 404, 404)
    assert_envelope(member.client.delete(path, **V), 400 if nul else 404, 403, 404, 405)  # 403: flavors are admin-only


def test_overflowing_quota_values_are_400(db):
    admin = Caller(Role.ADMIN)
    for value in (2**31, 2**63, -2, 10**400):
        body = f'{{"quota_set": {{"instances": {value}}}}}'
        response = raw(admin, "put", f"/compute/v2.1/os-quota-sets/{admin.project.pk}", body)
        assert_envelope(response, 400)


def test_bad_microversions(setup):
    member, _, _ = setup
    for header in ("compute 2.x", "compute 99.0", "compute \x00", "compute " + "9" * 500):
        response = member.client.get("/compute/v2.1/servers", HTTP_OPENSTACK_API_VERSION=header)
        assert_envelope(response, 400, 406)


def test_image_api_hostile_bodies(setup):
    member, _, _ = setup
    for body, content_type in [
        (b"{", "application/json"),
        (b'{"name": "\\u0000"}', "application/json"),
        (json.dumps({"name": "x" * 300}).encode(), "application/json"),
        (b"[]", "application/json"),
        (b"<xml/>", "application/xml"),
    ]:
        response = member.client.post("/image/v2/images", data=body, content_type=content_type)
        assert_envelope(response, 400, 415)
