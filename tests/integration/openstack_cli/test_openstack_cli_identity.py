"""The real ``openstack`` CLI against the cloud's built-in identity (no Keystone process): tokens issued,
used, revoked and expired, passwords refused alike for a known and an unknown user, application credentials
made, used and deleted, the catalog, and the identity names a user of another project may see.

A token is also sent straight to the compute API, as any client holding it would: what the CLI prints is
one side, what the cloud accepts the other."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import datetime

import pytest
import requests

from tests.openstack_cli import MEMBER_PROJECT, OTHER_PROJECT, rows_by

pytestmark = pytest.mark.integration

# The password variables, which another way of authenticating replaces.
WITHOUT_PASSWORD = dict.fromkeys(
    ("OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME", "OS_PROJECT_DOMAIN_NAME")
)


def servers_status(cli, token: str) -> int:
    """What the compute API answers a server list with this token."""
    response = requests.get(f"{cli.api_url}/compute/v2.1/servers", headers={"X-Auth-Token": token}, timeout=10)
    return response.status_code


def with_token(user, token: str):
    """``user``'s command line authenticating with ``token`` (rescoped to their project), not a password."""
    return user.with_env(
        OS_AUTH_TYPE="v3token", OS_TOKEN=token, OS_USERNAME=None, OS_PASSWORD=None, OS_USER_DOMAIN_NAME=None
    )


def without_request_id(message: str) -> str:
    return re.sub(r"\s*\(Request-ID: [^)]*\)", "", message).strip()


def test_token_issue_then_revoke(cli):
    issued = cli.member.json("token", "issue")
    assert issued["project_id"] == cli.member_project_id
    assert issued["user_id"] == "cli-member"
    token = issued["id"]
    assert len(token) == 64
    # The token works for the CLI (rescoped through the identity API) and straight at the compute API.
    assert with_token(cli.member, token).json("server", "list") == []
    assert servers_status(cli, token) == 200

    # Only its owner (or an admin) may revoke it: another project's user is told it is not there.
    assert "HTTP 404" in cli.other.fails("token", "revoke", token)
    assert servers_status(cli, token) == 200

    cli.member.ok("token", "revoke", token)
    assert servers_status(cli, token) == 401
    refused = with_token(cli.member, token).fails("server", "list")
    assert "HTTP 401" in refused, refused
    # Revoking one token leaves the user's others alone.
    assert servers_status(cli, cli.member.value("token", "issue", "-c", "id")) == 200


def test_an_expired_token_is_refused(cli, settings):
    # Long enough for a slow CLI start on a loaded machine, short enough to wait for.
    settings.IDENTITY = {**settings.IDENTITY, "TOKEN_TTL": 12}
    issued = cli.member.json("token", "issue")
    expires = datetime.fromisoformat(issued["expires"].replace("Z", "+00:00"))
    assert 0 < expires.timestamp() - time.time() <= 12
    token = issued["id"]
    assert servers_status(cli, token) == 200

    # The CLI prints the expiry to the second; the token lives up to a second longer.
    time.sleep(max(0.0, expires.timestamp() - time.time()) + 1.2)
    assert servers_status(cli, token) == 401
    refused = with_token(cli.member, token).fails("server", "list")
    assert "HTTP 401" in refused, refused


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(cli):
    wrong = cli.member.with_env(OS_PASSWORD="not-it").fails("token", "issue")
    unknown = cli.member.with_env(OS_USERNAME="nobody-here", OS_PASSWORD="not-it").fails("token", "issue")
    assert "HTTP 401" in wrong, wrong
    assert without_request_id(wrong) == without_request_id(unknown)
    # The right password still works: the refusal above was the password's.
    assert cli.member.value("token", "issue", "-c", "user_id") == "cli-member"


def test_application_credential_create_use_delete(cli):
    created = cli.member.json("application", "credential", "create", "--role", "reader", "ci")
    assert created["Name"] == "ci"
    assert created["Project ID"] == cli.member_project_id
    assert [role["name"] for role in created["Roles"]] == ["reader"]
    credential_id, secret = created["ID"], created["Secret"]
    assert secret
    listed = rows_by(cli.member.json("application", "credential", "list"), "Name")
    assert listed["ci"]["ID"] == credential_id
    # Another user neither lists nor finds it.
    assert cli.other.json("application", "credential", "list") == []
    assert cli.other.run("application", "credential", "show", credential_id).returncode != 0

    app = cli.member.with_env(
        **WITHOUT_PASSWORD,
        OS_AUTH_TYPE="v3applicationcredential",
        OS_APPLICATION_CREDENTIAL_ID=credential_id,
        OS_APPLICATION_CREDENTIAL_SECRET=secret,
    )
    issued = app.json("token", "issue")
    assert issued["project_id"] == cli.member_project_id
    assert issued["user_id"] == "cli-member"
    # The member's private image is the credential's to see; as a reader it may not make one.
    disk = cli.member.home / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1M"], check=True)
    image = cli.member.json(
        "image", "create", "--private", "--disk-format", "qcow2", "--file", str(disk), "member-image"
    )
    assert [row["ID"] for row in app.json("image", "list")] == [image["id"]]
    forbidden = app.fails("image", "create", "--disk-format", "qcow2", "--file", str(disk), "app-image")
    assert "403" in forbidden and "read-only" in forbidden, forbidden
    assert servers_status(cli, issued["id"]) == 200

    wrong_secret = app.with_env(OS_APPLICATION_CREDENTIAL_SECRET="not-the-secret").fails("token", "issue")
    assert "HTTP 401" in wrong_secret, wrong_secret

    cli.member.ok("application", "credential", "delete", "ci")
    assert cli.member.json("application", "credential", "list") == []
    # Deleting it revokes its tokens and refuses it from now on.
    assert servers_status(cli, issued["id"]) == 401
    refused = app.fails("token", "issue")
    assert "HTTP 401" in refused, refused


def test_catalog_list_and_show(cli):
    catalog = rows_by(cli.member.json("catalog", "list"), "Type")
    assert {"identity", "compute", "image", "network"} <= set(catalog)
    compute = cli.member.json("catalog", "show", "compute")
    urls = {
        (endpoint["interface"], endpoint["url"])
        for endpoint in compute["endpoints"]
        if endpoint["region"] == "RegionOne"
    }
    assert urls == {(interface, f"{cli.api_url}/compute/v2.1") for interface in ("public", "internal", "admin")}
    identity_url = cli.member.env["OS_AUTH_URL"].removesuffix("/v3")
    assert identity_url in str(catalog["identity"]["Endpoints"])
    assert f"{cli.api_url}/image" in str(catalog["image"]["Endpoints"])
    assert f"{cli.api_url}/networking" in str(catalog["network"]["Endpoints"])


def test_identity_names_are_the_callers_own(cli):
    assert [row["Name"] for row in cli.member.json("project", "list", "--my-projects")] == [MEMBER_PROJECT]
    assert [row["Name"] for row in cli.other.json("project", "list", "--my-projects")] == [OTHER_PROJECT]
    # Without admin, the whole list is one's own, and the first project and its user are not found.
    assert [row["Name"] for row in cli.other.json("project", "list")] == [OTHER_PROJECT]
    assert [row["Name"] for row in cli.other.json("user", "list")] == ["cli-other"]
    assert "No Project found" in cli.other.fails("project", "show", cli.member_project_id)
    assert "No Project found" in cli.other.fails("project", "show", MEMBER_PROJECT)
    assert "No User found" in cli.other.fails("user", "show", "cli-member")
    # An admin sees every project and user.
    projects = {row["Name"] for row in cli.admin.json("project", "list")}
    assert {"admin", MEMBER_PROJECT, OTHER_PROJECT} <= projects
    assert {"admin", "cli-member", "cli-other"} <= {row["Name"] for row in cli.admin.json("user", "list")}


def test_an_admin_makes_and_deletes_a_project_a_user_and_their_role(cli):
    project = cli.admin.json("project", "create", "--domain", "default", "--description", "Team", "cli-team")
    assert project["name"] == "cli-team" and project["enabled"] is True and project["description"] == "Team"
    assert "409" in cli.admin.fails("project", "create", "cli-team")
    user = cli.admin.json(
        "user", "create", "--domain", "default", "--password", "team-pw-1", "--project", "cli-team",
        "--email", "mate@example.org", "cli-teammate",
    )  # fmt: skip
    assert user["name"] == "cli-teammate" and user["default_project_id"] == project["id"]
    cli.admin.ok("role", "add", "--project", "cli-team", "--user", "cli-teammate", "member")
    assignments = cli.admin.json("role", "assignment", "list", "--project", project["id"], "--names")
    assert [(row["Role"], row["User"].split("@")[0]) for row in assignments] == [("member", "cli-teammate")]

    # The new user signs in to the new project, and the compute API takes their token.
    teammate = cli.member.with_env(OS_USERNAME="cli-teammate", OS_PASSWORD="team-pw-1", OS_PROJECT_NAME="cli-team")
    token = teammate.value("token", "issue", "-c", "id")
    assert servers_status(cli, token) == 200
    # Members may not do any of it.
    assert "403" in cli.member.fails("project", "create", "mine")
    # (openstacksdk, under `role add`, reports no refused grant: the cloud's answer is what counts.)
    cli.member.run("role", "add", "--project", MEMBER_PROJECT, "--user", "cli-member", "admin")
    mine = cli.admin.json("role", "assignment", "list", "--user", "cli-member", "--project", cli.member_project_id)
    assert [row["Role"] for row in mine] == ["member"]

    cli.admin.ok("role", "remove", "--project", "cli-team", "--user", "cli-teammate", "member")
    assert servers_status(cli, token) == 401  # the role went, and its token with it
    cli.admin.ok("role", "add", "--project", "cli-team", "--user", "cli-teammate", "member")
    token = teammate.value("token", "issue", "-c", "id")
    assert servers_status(cli, token) == 200
    cli.admin.ok("user", "delete", "cli-teammate")
    assert servers_status(cli, token) == 401
    assert "HTTP 401" in teammate.fails("token", "issue")
    cli.admin.ok("project", "delete", "cli-team")
    assert "cli-team" not in {row["Name"] for row in cli.admin.json("project", "list")}
