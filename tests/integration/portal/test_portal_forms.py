"""The launch, key pair and image forms: the same services as the API, their refusals next to the fields."""

from __future__ import annotations

import base64
import html
import re

import pytest

from portal.models import Aggregate, Image, Instance, Keypair, QuotaLimit

pytestmark = pytest.mark.integration

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhUqkV2mbA2ij8DPw6Yy4NLl2R7CU1uLkSy7gC2Zb6u portal@test"


def field_errors(page: str, field: str) -> list[str]:
    block = re.search(rf'<div class="field" id="field-{field}">(.*?)</div>', page, re.S)
    assert block, f"no field {field} on the page"
    return [html.unescape(e) for e in re.findall(r'<p class="field-error">(.*?)</p>', block.group(1), re.S)]


def launch(user, **fields):
    data = {"name": "web", "flavor": "42", "image": "", "network": "none", "count": "1", "user_data": ""}
    data.update(fields)
    return user.client.post("/instances/launch/", data)


def test_the_launch_form_labels_every_field(portal_member, flavor, image):
    html = portal_member.client.get("/instances/launch/").content.decode()
    for label in ("Name", "Flavor", "Image", "Key pair", "Availability zone", "Server group", "Count", "User data"):
        assert re.search(
            rf"<label for=\"id_\w+\">{label}( <span class=\"muted\">\(optional\)</span>)?</label>", html
        ), label
    assert ">Launch</button>" in html
    assert "m1.small (2 vCPU, 1024 MB RAM, 1 GB disk)" in html


def test_launching_creates_instances_through_the_create_service(portal_member, flavor, image, host):
    Keypair.objects.create(user=portal_member.user, name="mine", public_key=SSH_KEY, fingerprint="f")
    Aggregate.objects.create(name="rack-a", metadata={"availability_zone": "zone-a"}).hosts.add(host)
    response = launch(
        portal_member, image=str(image.pk), keypair="mine", availability_zone="zone-a", user_data="#!/bin/sh\necho hi\n"
    )
    assert response.status_code == 302
    instance = Instance.objects.get(project=portal_member.project)
    assert response["Location"] == f"/instances/{instance.uuid}/"
    assert (instance.name, instance.vm_state, instance.task_state) == ("web", "building", "scheduling")
    assert instance.key_name == "mine" and instance.availability_zone == "zone-a"
    assert base64.b64decode(instance.user_data) == b"#!/bin/sh\necho hi\n"  # base64, as the API stores it
    assert instance.actions.get().action == "create"


def test_a_count_launches_numbered_instances_in_one_reservation(portal_member, flavor, image):
    response = launch(portal_member, image=str(image.pk), count="3")
    assert response.status_code == 302 and response["Location"] == "/instances/"
    instances = Instance.objects.filter(project=portal_member.project).order_by("launch_index")
    assert [i.name for i in instances] == ["web-1", "web-2", "web-3"]
    assert len({i.reservation_id for i in instances}) == 1


def test_validation_errors_are_shown_next_to_their_fields(portal_member, flavor, image):
    response = launch(portal_member, name=" bad ", flavor="nope", image="", count="0")
    assert response.status_code == 400
    html = response.content.decode()
    assert field_errors(html, "name") == [
        "A name must not be empty, start or end with spaces, or hold control characters."
    ]
    assert "Select a valid choice" in field_errors(html, "flavor")[0]
    assert field_errors(html, "image") == ["This field is required."]
    assert field_errors(html, "count") == ["Ensure this value is greater than or equal to 1."]
    assert re.search(
        r'<input type="number" name="count"[^>]*aria-invalid="true"[^>]*aria-describedby="id_count_error"', html
    )
    assert '<div id="id_count_error" role="alert">' in html
    assert Instance.objects.count() == 0


def test_a_quota_error_is_shown_next_to_the_fields_it_concerns(portal_member, flavor, image):
    QuotaLimit.objects.create(project=portal_member.project, resource="cores", hard_limit=3)
    response = launch(portal_member, image=str(image.pk), count="2")
    assert response.status_code == 400
    html = response.content.decode()
    (error,) = field_errors(html, "flavor")
    assert error.startswith("Quota exceeded for cores: Requested 4, but already used 0 of 3 cores")
    assert field_errors(html, "count") == []
    assert Instance.objects.count() == 0  # all or none: the first of the two was rolled back


def test_an_instances_quota_error_is_shown_at_the_count(portal_member, flavor, image):
    QuotaLimit.objects.create(project=portal_member.project, resource="instances", hard_limit=1)
    portal_member.instance()
    html = launch(portal_member, image=str(image.pk)).content.decode()
    (error,) = field_errors(html, "count")
    assert error.startswith("Quota exceeded for instances")


def test_an_image_too_big_for_the_flavor_is_shown_at_the_flavor(portal_member, flavor, image):
    Image.objects.filter(pk=image.pk).update(min_ram=4096)
    html = launch(portal_member, image=str(image.pk)).content.decode()
    assert field_errors(html, "flavor") == ["Flavor's memory is too small for requested image (needs 4096 MB)."]


def test_readers_cannot_launch(portal_reader, flavor, image):
    response = launch(portal_reader, image=str(image.pk))
    assert response.status_code == 400
    assert "read-only" in response.content.decode()
    assert Instance.objects.count() == 0


def test_importing_a_key_pair_and_its_errors(portal_member):
    client = portal_member.client
    html = client.get("/keypairs/").content.decode()
    assert ">Import key pair</button>" in html
    response = client.post("/keypairs/", {"name": "laptop", "key_type": "ssh", "public_key": SSH_KEY})
    assert response.status_code == 302
    keypair = Keypair.objects.get(user=portal_member.user, name="laptop")
    assert keypair.fingerprint.count(":") == 15
    html = client.get("/keypairs/").content.decode()
    assert "laptop" in html and keypair.fingerprint in html
    again = client.post("/keypairs/", {"name": "laptop", "key_type": "ssh", "public_key": SSH_KEY})
    assert field_errors(again.content.decode(), "name") == ["Key pair 'laptop' already exists."]
    bad = client.post("/keypairs/", {"name": "other", "key_type": "ssh", "public_key": "ssh-rsa not-a-key"})
    assert field_errors(bad.content.decode(), "public_key")[0].startswith("Keypair data is invalid")
    assert client.post("/keypairs/laptop/delete").status_code == 302
    assert not Keypair.objects.filter(user=portal_member.user).exists()


def test_uploading_an_image_through_the_image_service(portal_member, settings, tmp_path):
    settings.CLOUD = {**settings.CLOUD, "IMAGE_DIR": tmp_path}
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = bytes(range(256)) * 8
    upload = SimpleUploadedFile("disk.qcow2", data, content_type="application/octet-stream")
    response = portal_member.client.post(
        "/images/upload/",
        {"name": "my-disk", "disk_format": "raw", "container_format": "bare", "visibility": "private",
         "min_disk": "0", "min_ram": "0", "file": upload},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()
    image = Image.objects.get(name="my-disk")
    assert (image.status, image.size, image.owner_id) == ("active", len(data), portal_member.project.pk)
    assert (tmp_path / str(image.pk)).read_bytes() == data
    assert "my-disk" in portal_member.client.get("/images/").content.decode()


def test_an_upload_without_a_file_says_so_at_the_file(portal_member):
    response = portal_member.client.post(
        "/images/upload/", {"name": "x", "disk_format": "raw", "container_format": "bare", "visibility": "private",
                            "min_disk": "0", "min_ram": "0"},
    )  # fmt: skip
    assert response.status_code == 400
    assert field_errors(response.content.decode(), "file") == ["This field is required."]
    assert not Image.objects.filter(name="x").exists()
