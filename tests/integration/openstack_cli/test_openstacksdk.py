"""openstacksdk against the cloud's built-in identity (no Keystone process), as a user's script would use
it: ``openstack.connect(...)`` with a password or an application credential, the catalog the token brings,
the lists of each service, a server booted and deleted on a compute host with libvirt's test driver; and a
user of another project, who sees and touches nothing of the first."""

from __future__ import annotations

import re

import pytest

from portal.auth.context import RequestContext
from portal.models import Instance, Membership
from portal.services.images import image_create
from tests.openstack_sdk import OpenStackSDK

pytestmark = pytest.mark.integration


@pytest.fixture
def sdk(cli, request):
    """The member's and the other project's user's connections; on failure, the calls they made."""
    connections = {"member": OpenStackSDK.password(cli.member), "other": OpenStackSDK.password(cli.other)}
    yield connections
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("===== openstacksdk transcript =====")
        for connection in connections.values():
            print(connection.transcript())


def test_password_auth_lists_and_a_server_created_and_deleted(cli, sdk, host_up, tiny_flavor, demo_image):
    member, other = sdk["member"], sdk["other"]
    me = member.call("whoami")
    assert (me["user_id"], me["project_id"]) == ("cli-member", cli.member_project_id)
    assert me["roles"] == ["member", "reader"]
    assert me["catalog"]["compute"] == [f"{cli.api_url}/compute/v2.1"]
    assert me["catalog"]["image"] == [f"{cli.api_url}/image"]
    assert me["catalog"]["network"] == [f"{cli.api_url}/networking"]
    assert me["catalog"]["identity"] == [f"{cli.api_url}/identity"]

    seen = member.call("inventory")
    assert seen["servers"] == []
    assert "m1.tiny" in seen["flavors"]
    assert [image["name"] for image in seen["images"]] == ["demo"]
    assert seen["networks"] == []

    server = member.call("server_create", name="sdk-vm", image="demo", flavor="m1.tiny", networks="none")
    assert server["status"] == "ACTIVE", server
    assert (server["project_id"], server["user_id"]) == (cli.member_project_id, "cli-member")
    assert not server["addresses"]
    instance = Instance.objects.get(uuid=server["id"])
    assert (instance.project_id, instance.host.name) == (cli.member_project_id, "testhost1")
    assert member.call("inventory")["servers"] == [{"id": server["id"], "name": "sdk-vm", "status": "ACTIVE"}]

    # The other project's user: no server listed, none found by id, none to delete.
    assert other.call("inventory")["servers"] == []
    assert other.refused("server_show", server_id=server["id"])["status"] == 404
    assert other.refused("server_delete", server_id=server["id"])["status"] == 404
    assert member.call("server_show", server_id=server["id"])["status"] == "ACTIVE"

    member.call("server_delete", server_id=server["id"])
    assert member.call("inventory")["servers"] == []
    assert member.refused("server_show", server_id=server["id"])["status"] == 404


def without_request_id(refusal: dict) -> dict:
    return {**refusal, "message": re.sub(r"\s*\(Request-ID: [^)]*\)", "", refusal.get("message", "")).strip()}


def test_a_wrong_password_is_refused_like_an_unknown_user(cli, sdk):
    wrong = OpenStackSDK(home=cli.member.home, **{**sdk["member"].connect, "password": "not-it"})
    unknown = OpenStackSDK(home=cli.member.home, **{**wrong.connect, "username": "nobody-here"})
    refused = wrong.refused("whoami")
    assert refused["status"] == 401
    # The same answer but for the request's own id.
    assert without_request_id(unknown.refused("whoami")) == without_request_id(refused)


def test_application_credential_auth(cli, sdk, tiny_flavor, demo_image):
    member, other = sdk["member"], sdk["other"]
    membership = Membership.objects.select_related("user", "project").get(user__username="cli-member")
    private = image_create(
        ctx=RequestContext(user=membership.user, project=membership.project, role=membership.role),
        name="member-image",
        disk_format="qcow2",
        container_format="bare",
        visibility="private",
    )

    credential = member.call("application_credential_create", name="sdk-script", roles=["reader"])
    assert credential["project_id"] == cli.member_project_id and credential["roles"] == ["reader"]
    app = member.application_credential(credential_id=credential["id"], secret=credential["secret"])

    me = app.call("whoami")
    assert (me["user_id"], me["project_id"], me["roles"]) == ("cli-member", cli.member_project_id, ["reader"])
    assert me["catalog"]["compute"] == [f"{cli.api_url}/compute/v2.1"]
    assert {image["id"] for image in app.call("inventory")["images"]} == {str(private.id), str(demo_image.id)}
    assert str(private.id) not in {image["id"] for image in other.call("inventory")["images"]}
    # A reader's credential may look, not act.
    refused = app.refused("server_create", name="app-vm", image="demo", flavor="m1.tiny", networks="none")
    assert refused["status"] == 403, refused
    assert not Instance.objects.filter(name="app-vm").exists()

    wrong = member.application_credential(credential_id=credential["id"], secret="not-the-secret")
    assert wrong.refused("whoami")["status"] == 401
    # Another user cannot delete it: it is not theirs to find.
    assert other.refused("application_credential_delete", credential_id=credential["id"])["status"] == 404
    assert app.call("whoami")["project_id"] == cli.member_project_id

    member.call("application_credential_delete", credential_id=credential["id"])
    assert app.refused("whoami")["status"] == 401
