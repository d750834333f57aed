"""The real `openstack` CLI on images, quotas and limits, through a real Keystone and through the built-in
identity; every output is checked.

Flavors, keypairs, aggregates, zones, hypervisors, services and server groups are in
test_openstack_cli_admin_resources.py."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from portal.models import Project
from tests.openstack_cli import MEMBER_PROJECT, rows_by

pytestmark = pytest.mark.integration

# The one CLI module run with both identities: a real Keystone end to end (its tokens, catalog and a project
# this cloud has not seen yet), and the built-in identity.
CLI_IDENTITIES = ("keystone", "builtin")


def test_image_create_list_show_delete(cli, transactional_db):
    path = cli.member.home / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "32M"], check=True)
    data = path.read_bytes()

    created = cli.member.json(
        "image", "create", "--file", str(path), "--disk-format", "qcow2", "--container-format", "bare", "cli-image"
    )
    assert created["name"] == "cli-image"
    assert created["status"] == "active"
    assert created["disk_format"] == "qcow2"
    assert created["size"] == len(data)
    assert created["checksum"] == hashlib.md5(data).hexdigest()  # noqa: S324 (Glance's checksum is MD5)
    assert created["owner"] == cli.member_project_id

    listed = rows_by(cli.member.json("image", "list"), "Name")
    assert listed["cli-image"]["ID"] == created["id"]
    assert listed["cli-image"]["Status"] == "active"

    shown = cli.member.json("image", "show", "cli-image")
    assert shown["id"] == created["id"]
    assert shown["properties"]["os_hash_algo"] == "sha256"
    assert shown["properties"]["os_hash_value"] == hashlib.sha256(data).hexdigest()
    assert shown["visibility"] in ("shared", "private")
    # Another project does not see it; an admin does, as in Glance.
    assert "cli-image" not in cli.other.value("image", "list", "-c", "Name").splitlines()
    assert "No Image found for cli-image" in cli.other.fails("image", "show", "cli-image")
    assert "cli-image" in cli.admin.value("image", "list", "-c", "Name").splitlines()

    cli.member.ok("image", "delete", "cli-image")
    assert "cli-image" not in cli.member.value("image", "list", "-c", "Name").splitlines()
    assert "No Image found for cli-image" in cli.member.fails("image", "show", "cli-image")


def test_quota_show_set_and_limits_show(cli, transactional_db):
    before = {row["Resource"]: row["Limit"] for row in cli.member.json("quota", "show")}
    assert before["cores"] == 20
    assert before["instances"] == 10
    assert before["ram"] == 51200

    cli.admin.ok("quota", "set", "--cores", "7", "--instances", "3", "--ram", "4096", MEMBER_PROJECT)
    after = {row["Resource"]: row["Limit"] for row in cli.admin.json("quota", "show", MEMBER_PROJECT)}
    assert (after["cores"], after["instances"], after["ram"]) == (7, 3, 4096)
    assert Project.objects.filter(pk=cli.member_project_id).exists()
    # Only admins set quotas.
    assert "403" in cli.member.fails("quota", "set", "--cores", "100", MEMBER_PROJECT)

    # openstacksdk names the absolute limits after its attributes (maxTotalCores is total_cores, ...).
    limits = {row["Name"]: row["Value"] for row in cli.member.json("limits", "show", "--absolute")}
    assert limits["total_cores"] == 7
    assert limits["instances"] == 3
    assert limits["total_ram"] == 4096
    assert limits["total_cores_used"] == 0
    assert limits["instances_used"] == 0
