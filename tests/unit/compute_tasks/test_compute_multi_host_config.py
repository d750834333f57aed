"""COMPUTE_HOSTS: one worker process standing in for many simulated hosts."""

import pytest

from compute_tasks.config import ConfigError, HostConfig, parse_host_list

pytestmark = pytest.mark.unit


def test_host_lists_and_ranges():
    assert parse_host_list("") == ()
    assert parse_host_list("a, b,,a") == ("a", "b")
    assert parse_host_list("sim-[8-11]") == ("sim-8", "sim-9", "sim-10", "sim-11")
    assert parse_host_list("sim-[098-101].lab") == ("sim-098.lab", "sim-099.lab", "sim-100.lab", "sim-101.lab")
    assert len(parse_host_list("h[1-10000]")) == 10000


@pytest.mark.parametrize("value", ["sim-[5-1]", "h[0-10000]", "bad host", "-x", "a,h[1-9999],b,c"])
def test_bad_host_lists_name_the_variable(value):
    with pytest.raises(ConfigError, match="COMPUTE_HOSTS"):
        parse_host_list(value)


def test_many_hosts_share_a_state_dir_and_each_gets_its_own(tmp_path):
    config = HostConfig.from_env({"COMPUTE_HOSTS": "sim-[1-3]", "COMPUTE_STATE_DIR": str(tmp_path)})
    assert config.hosts == config.all_hosts == ("sim-1", "sim-2", "sim-3")
    assert config.host == "sim-1"
    two = config.for_host("sim-2")
    assert (two.host, two.hosts, two.state_dir) == ("sim-2", (), tmp_path / "sim-2")
    assert two.instances_dir == tmp_path / "sim-2" / "instances"
    with pytest.raises(ValueError, match="not one of"):
        config.for_host("sim-9")


def test_an_ordinary_host_is_its_only_host(tmp_path):
    config = HostConfig.from_env({"COMPUTE_HOST": "hv1", "COMPUTE_STATE_DIR": str(tmp_path)})
    assert config.hosts == ()
    assert config.all_hosts == ("hv1",)
    assert config.for_host("hv1") is config


def test_compute_host_must_be_one_of_the_hosts():
    with pytest.raises(ConfigError, match="COMPUTE_HOST='other'"):
        HostConfig.from_env({"COMPUTE_HOSTS": "a,b", "COMPUTE_HOST": "other"})
