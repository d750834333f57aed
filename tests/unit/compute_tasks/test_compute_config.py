import socket
from pathlib import Path

import pytest

from compute_tasks.config import REPO_ROOT, ConfigError, HostConfig

pytestmark = pytest.mark.unit


def test_defaults_work_on_one_machine():
    config = HostConfig.from_env({})

    assert config.host == socket.gethostname()
    assert config.broker_url == "redis://127.0.0.1:6379/0"
    assert config.driver == "libvirt"
    assert config.libvirt_uri == "qemu:///system"
    assert config.virt_type == "qemu"
    assert config.state_dir == REPO_ROOT / "var" / "compute" / config.host
    assert config.images_dir == config.state_dir / "images"
    assert config.heartbeat_interval == 5.0
    assert config.vnc_listen == config.vnc_address == "127.0.0.1"
    assert config.http_timeout == 30.0
    assert config.shutdown_timeout == 60.0


def test_values_come_from_the_environment(tmp_path):
    config = HostConfig.from_env(
        {
            "COMPUTE_HOST": "hv-01",
            "CELERY_BROKER_URL": "amqp://guest@rabbit//",
            "COMPUTE_DRIVER": "fake",
            "COMPUTE_LIBVIRT_URI": "test:///default",
            "COMPUTE_VIRT_TYPE": "KVM",
            "COMPUTE_STATE_DIR": str(tmp_path),
            "COMPUTE_HEARTBEAT_INTERVAL": "0.5",
            "COMPUTE_VNC_LISTEN": "192.0.2.5",
            "COMPUTE_HTTP_TIMEOUT": "3",
            "COMPUTE_SHUTDOWN_TIMEOUT": "0",
        }
    )

    assert (config.host, config.driver, config.virt_type) == ("hv-01", "fake", "kvm")
    assert config.libvirt_uri == "test:///default"
    assert config.state_dir == tmp_path
    assert config.heartbeat_interval == 0.5
    assert config.http_timeout == 3.0
    assert config.shutdown_timeout == 0.0
    assert config.vnc_listen == config.vnc_address == "192.0.2.5"


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])  # noqa: S104 - only parsed
def test_vnc_servers_never_listen_on_every_address(wildcard):
    with pytest.raises(ConfigError, match="COMPUTE_VNC_LISTEN.*console proxy"):
        HostConfig.from_env({"COMPUTE_VNC_LISTEN": wildcard})


def test_the_migration_address_defaults_to_the_address_towards_the_broker():
    assert HostConfig.from_env({}).migration_address == "127.0.0.1"
    config = HostConfig.from_env({"COMPUTE_MY_IP": "192.0.2.7"})
    assert config.migration_address == config.my_ip == "192.0.2.7"
    assert HostConfig.from_env({"COMPUTE_MIGRATION_ADDRESS": "127.0.0.22"}).migration_address == "127.0.0.22"


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])  # noqa: S104 - only parsed
def test_other_hosts_need_a_real_migration_address(wildcard):
    with pytest.raises(ConfigError, match="COMPUTE_MIGRATION_ADDRESS.*other hosts"):
        HostConfig.from_env({"COMPUTE_MIGRATION_ADDRESS": wildcard})


def test_the_state_dir_defaults_per_host():
    assert HostConfig.from_env({"COMPUTE_HOST": "a"}).state_dir.name == "a"
    assert HostConfig.from_env({"COMPUTE_HOST": "b"}).state_dir.name == "b"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COMPUTE_VIRT_TYPE", "xen"),
        ("COMPUTE_DRIVER", "vmware"),
        ("COMPUTE_HOST", "bad host/name"),
        ("COMPUTE_HEARTBEAT_INTERVAL", "soon"),
        ("COMPUTE_HEARTBEAT_INTERVAL", "0"),
        ("COMPUTE_HTTP_TIMEOUT", "-1"),
        ("COMPUTE_HTTP_TIMEOUT", "nan"),
        ("COMPUTE_VNC_LISTEN", "localhost:5900"),
        ("CELERY_BROKER_URL", "127.0.0.1:6379"),
        ("COMPUTE_LIBVIRT_URI", "qemu"),
        ("COMPUTE_MIGRATION_ADDRESS", "hv-02"),
    ],
)
def test_an_invalid_value_fails_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        HostConfig.from_env({name: value})


def test_instance_dirs_cannot_escape_the_state_dir(tmp_path):
    config = HostConfig.from_env({"COMPUTE_STATE_DIR": str(tmp_path)})

    assert config.instance_dir("6F2E1C9A-0B9E-4C1B-9C55-3C0C1E1F2A3B") == (
        tmp_path / "instances" / "6f2e1c9a-0b9e-4c1b-9c55-3c0c1e1f2a3b"
    )
    with pytest.raises(ValueError, match="not a valid instance uuid"):
        config.instance_dir("../../etc")


def test_config_is_frozen():
    config = HostConfig.from_env({})
    with pytest.raises(AttributeError):
        config.host = "other"  # type: ignore[misc]
    assert isinstance(config.state_dir, Path)


def test_the_live_migration_bandwidth_is_a_limit_in_mib_per_second():
    assert HostConfig.from_env({}).live_migration_bandwidth == 0
    assert HostConfig.from_env({"COMPUTE_LIVE_MIGRATION_BANDWIDTH": "8"}).live_migration_bandwidth == 8
    for bad in ("-1", "fast"):
        with pytest.raises(ConfigError, match="COMPUTE_LIVE_MIGRATION_BANDWIDTH"):
            HostConfig.from_env({"COMPUTE_LIVE_MIGRATION_BANDWIDTH": bad})


def test_instances_and_images_may_live_on_shared_storage(tmp_path):
    config = HostConfig.from_env({"COMPUTE_STATE_DIR": str(tmp_path / "state")})
    assert (config.instances_dir, config.images_dir) == (
        tmp_path / "state" / "instances",
        tmp_path / "state" / "images",
    )
    shared = HostConfig.from_env(
        {
            "COMPUTE_STATE_DIR": str(tmp_path / "state"),
            "COMPUTE_INSTANCES_DIR": str(tmp_path / "nfs" / "instances"),
            "COMPUTE_IMAGES_DIR": str(tmp_path / "nfs" / "images"),
        }
    )
    assert (shared.instances_dir, shared.images_dir) == (tmp_path / "nfs" / "instances", tmp_path / "nfs" / "images")


def test_the_metadata_agent_asks_the_control_plane_on_the_brokers_machine_unless_told():
    assert HostConfig.from_env({}).metadata_url == "http://127.0.0.1:8000/internal/metadata"
    config = HostConfig.from_env({"CELERY_BROKER_URL": "redis://:pw@192.0.2.9:6379/0"})
    assert (config.metadata_url, config.metadata_timeout) == ("http://192.0.2.9:8000/internal/metadata", 5.0)
    config = HostConfig.from_env(
        {"COMPUTE_METADATA_URL": "https://api.example.test/internal/metadata/", "COMPUTE_METADATA_TIMEOUT": "2"}
    )
    assert (config.metadata_url, config.metadata_timeout) == ("https://api.example.test/internal/metadata", 2.0)
    with pytest.raises(ConfigError, match="COMPUTE_METADATA_URL"):
        HostConfig.from_env({"COMPUTE_METADATA_URL": "ftp://x/"})


def test_the_metrics_exporter_is_off_unless_an_address_is_set():
    assert HostConfig.from_env({}).metrics_address is None
    # A token alone opens nothing.
    assert HostConfig.from_env({"COMPUTE_METRICS_TOKEN": "t"}).metrics_address is None


@pytest.mark.parametrize(("value", "address"), [("127.0.0.1:9180", ("127.0.0.1", 9180)), ("[::1]:9181", ("::1", 9181))])
def test_the_metrics_address_is_an_address_and_a_port(value, address):
    config = HostConfig.from_env({"COMPUTE_METRICS_ADDRESS": value, "COMPUTE_METRICS_TOKEN": "secret-token"})
    assert config.metrics_address == address
    assert config.metrics_token == "secret-token"
    # A configuration is logged now and then: never with the token.
    assert "secret-token" not in repr(config)


@pytest.mark.parametrize(
    "value", ["9180", "localhost:9180", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "::1:9180"]
)
def test_a_metrics_address_that_is_not_one_is_refused(value):
    with pytest.raises(ConfigError, match="COMPUTE_METRICS_ADDRESS"):
        HostConfig.from_env({"COMPUTE_METRICS_ADDRESS": value, "COMPUTE_METRICS_TOKEN": "t"})


def test_an_exporter_without_a_token_is_refused():
    with pytest.raises(ConfigError, match="COMPUTE_METRICS_TOKEN"):
        HostConfig.from_env({"COMPUTE_METRICS_ADDRESS": "127.0.0.1:9180"})
