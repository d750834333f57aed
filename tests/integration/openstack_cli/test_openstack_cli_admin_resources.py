"""The real ``openstack`` CLI against flavors, key pairs, aggregates, availability zones, hypervisors,
compute services and server groups, through the built-in identity; every command's output is checked."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from portal.api import microversion
from portal.models import ComputeHost, Flavor
from tests.integration.compute_api.admin_helpers import ComputeHostFactory
from tests.openstack_cli import rows_by

pytestmark = pytest.mark.integration


@pytest.fixture
def compute_host(transactional_db):
    return ComputeHostFactory(name="cli-host1", host_ip="192.0.2.21")


def test_flavor_create_set_show_list_delete(cli):
    created = cli.admin.json(
        "flavor", "create", "--id", "42", "--ram", "256", "--disk", "1", "--vcpus", "2",
        "--property", "hw:cpu_policy=shared", "--description", "for the CLI", "cli.small",
    )  # fmt: skip
    assert (created["id"], created["name"], created["ram"], created["vcpus"], created["disk"]) == (
        "42", "cli.small", 256, 2, 1,
    )  # fmt: skip
    assert created["properties"] == {"hw:cpu_policy": "shared"}
    assert created["description"] == "for the CLI"

    cli.admin.ok("flavor", "set", "--property", "hw:numa_nodes=1", "--property", "hw_rng:allowed=True", "cli.small")
    shown = cli.member.json("flavor", "show", "cli.small")
    assert shown["properties"] == {"hw:cpu_policy": "shared", "hw:numa_nodes": "1", "hw_rng:allowed": "True"}
    assert shown["os-flavor-access:is_public"] is True
    refused = cli.admin.fails("flavor", "set", "--property", "hw:cpu_policy=banana", "cli.small")
    assert "'banana' is not one of: dedicated, shared, mixed" in refused
    cli.admin.ok("flavor", "unset", "--property", "hw_rng:allowed", "cli.small")
    assert Flavor.objects.get(flavorid="42").extra_specs == {"hw:cpu_policy": "shared", "hw:numa_nodes": "1"}

    listed = rows_by(cli.member.json("flavor", "list"), "Name")
    assert listed["cli.small"]["ID"] == "42" and listed["cli.small"]["RAM"] == 256
    assert "403" in cli.member.fails("flavor", "create", "--ram", "1", "--disk", "1", "--vcpus", "1", "nope")

    cli.admin.ok("flavor", "delete", "cli.small")
    assert "cli.small" not in rows_by(cli.member.json("flavor", "list"), "Name")


def test_private_flavor_shared_with_a_project(cli):
    created = cli.admin.json(
        "flavor", "create", "--ram", "128", "--disk", "0", "--vcpus", "1", "--private", "--project", "cli-project",
        "cli.private",
    )  # fmt: skip
    assert created["os-flavor-access:is_public"] is False
    assert len(created["id"]) == 36  # no --id: a UUID
    assert "cli.private" in rows_by(cli.member.json("flavor", "list", "--all"), "Name")
    access = cli.admin.json("flavor", "show", "cli.private")["access_project_ids"]
    assert access == [cli.member_project_id]
    cli.admin.ok("flavor", "unset", "--project", "cli-project", "cli.private")
    assert "cli.private" not in rows_by(cli.member.json("flavor", "list", "--all"), "Name")
    cli.admin.ok("flavor", "delete", "cli.private")


def test_keypair_create_list_show_delete(cli, tmp_path):
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    key_file = tmp_path / "id.pub"
    key_file.write_text(line + " cli@test\n")
    imported = cli.member.json("keypair", "create", "--public-key", str(key_file), "cli-imported")
    assert imported["name"] == "cli-imported" and imported["type"] == "ssh"
    assert len(imported["fingerprint"].split(":")) == 16

    # The CLI makes the key itself and imports its public half.
    private_key = cli.member.ok("keypair", "create", "cli-generated")
    key = serialization.load_ssh_private_key(private_key.strip().encode() + b"\n", password=None)
    generated_public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)

    listed = rows_by(cli.member.json("keypair", "list"), "Name")
    assert set(listed) == {"cli-imported", "cli-generated"}
    assert cli.member.ok("keypair", "show", "--public-key", "cli-generated").startswith(generated_public.decode())
    assert listed["cli-imported"]["Fingerprint"] == imported["fingerprint"]
    shown = cli.member.json("keypair", "show", "cli-imported")
    assert shown["fingerprint"] == imported["fingerprint"]
    assert cli.member.ok("keypair", "show", "--public-key", "cli-imported").strip() == line + " cli@test"
    assert cli.admin.json("keypair", "list") == []  # key pairs belong to their user

    cli.member.ok("keypair", "delete", "cli-imported", "cli-generated")
    assert cli.member.json("keypair", "list") == []


def test_aggregate_and_availability_zones(cli, compute_host):
    created = cli.admin.json("aggregate", "create", "--zone", "cli-az", "cli-agg")
    assert (created["name"], created["availability_zone"]) == ("cli-agg", "cli-az")
    added = cli.admin.json("aggregate", "add", "host", "cli-agg", "cli-host1")
    assert added["hosts"] == ["cli-host1"]
    cli.admin.ok("aggregate", "set", "--property", "ssd=true", "cli-agg")
    shown = cli.admin.json("aggregate", "show", "cli-agg")
    assert shown["properties"] == {"ssd": "true"}
    assert shown["availability_zone"] == "cli-az"
    assert shown["hosts"] == ["cli-host1"]

    zones = rows_by(cli.member.json("availability", "zone", "list", "--compute"), "Zone Name")
    assert zones["cli-az"]["Zone Status"] == "available"
    detailed = cli.admin.json("availability", "zone", "list", "--compute", "--long")
    rows = [r for r in detailed if r["Zone Name"] == "cli-az"]
    assert [(r["Host Name"], r["Service Name"]) for r in rows] == [("cli-host1", "nova-compute")]
    assert rows[0]["Service Status"].startswith("enabled :-) ")  # enabled, and up

    assert "403" in cli.member.fails("aggregate", "list")
    cli.admin.ok("aggregate", "remove", "host", "cli-agg", "cli-host1")
    cli.admin.ok("aggregate", "delete", "cli-agg")
    assert cli.admin.json("aggregate", "list") == []


def test_hypervisor_list_and_show(cli, compute_host):
    (row,) = [r for r in cli.admin.json("hypervisor", "list") if r["Hypervisor Hostname"] == "cli-host1"]
    assert row["State"] == "up" and row["Hypervisor Type"] == "QEMU" and row["Host IP"] == "192.0.2.21"
    shown = cli.admin.json("hypervisor", "show", "cli-host1")
    assert shown["hypervisor_hostname"] == "cli-host1"
    assert shown["state"] == "up" and shown["status"] == "enabled"
    assert shown["service_host"] == "cli-host1"
    if microversion.MAX_VERSION < "2.88":  # from 2.88 a hypervisor shows no resource figures
        assert shown["vcpus"] == 8 and shown["memory_mb"] == 16384
    else:
        assert "vcpus" not in shown and "memory_mb" not in shown
    assert shown["uptime"] == "3 days,  2:33" and shown["users"] == "1"
    assert shown["load_average"] == "0.10, 0.20, 0.30"
    assert "403" in cli.member.fails("hypervisor", "list")


def test_compute_service_list_and_set(cli, compute_host):
    services = rows_by(cli.admin.json("compute", "service", "list"), "Host")
    assert services["cli-host1"]["Binary"] == "nova-compute"
    assert (services["cli-host1"]["Status"], services["cli-host1"]["State"]) == ("enabled", "up")
    assert services["cli-host1"]["Zone"] == "nova"

    cli.admin.ok(
        "compute", "service", "set", "--disable", "--disable-reason", "maintenance", "cli-host1", "nova-compute"
    )
    disabled = rows_by(cli.admin.json("compute", "service", "list", "--long"), "Host")["cli-host1"]
    assert (disabled["Status"], disabled["Disabled Reason"]) == ("disabled", "maintenance")
    host = ComputeHost.objects.get(name="cli-host1")
    assert (host.enabled, host.disabled_reason) == (False, "maintenance")

    cli.admin.ok("compute", "service", "set", "--down", "cli-host1", "nova-compute")
    assert rows_by(cli.admin.json("compute", "service", "list"), "Host")["cli-host1"]["State"] == "down"
    cli.admin.ok("compute", "service", "set", "--enable", "--up", "cli-host1", "nova-compute")
    again = rows_by(cli.admin.json("compute", "service", "list"), "Host")["cli-host1"]
    assert (again["Status"], again["State"]) == ("enabled", "up")


def test_server_group_create_list_delete(cli):
    created = cli.member.json("server", "group", "create", "--policy", "anti-affinity", "cli-group")
    assert created["name"] == "cli-group"
    assert created["members"] == []
    if microversion.MAX_VERSION >= "2.64":
        assert (created["policy"], created["rules"]) == ("anti-affinity", {})
        ruled = cli.member.json(
            "server", "group", "create", "--policy", "anti-affinity", "--rule", "max_server_per_host=2", "cli-ruled"
        )
        assert ruled["rules"] == {"max_server_per_host": 2}
        cli.member.ok("server", "group", "delete", "cli-ruled")
    else:  # the CLI shows the ``policies`` list the API speaks before 2.64
        assert created["policies"] == ["anti-affinity"]
    listed = rows_by(cli.member.json("server", "group", "list"), "Name")
    assert listed["cli-group"]["ID"] == created["id"]
    assert cli.admin.json("server", "group", "list") == []
    everyone = rows_by(cli.admin.json("server", "group", "list", "--all-projects"), "Name")
    assert everyone["cli-group"]["ID"] == created["id"]
    cli.member.ok("server", "group", "delete", "cli-group")
    assert cli.member.json("server", "group", "list") == []
