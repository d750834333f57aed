"""How the data plane is configured, how the manager uses it, and the domain XML of a port's NIC."""

import uuid

import pytest

from compute_tasks.config import ConfigError, HostConfig
from compute_tasks.dataplane import NullDataplane
from compute_tasks.dataplane.base import Dataplane
from compute_tasks.drivers import domain_xml
from compute_tasks.drivers.domain_xml import InvalidDomainSpec
from compute_tasks.drivers.fake import FakeDriver
from compute_tasks.manager import ComputeManager
from compute_tasks.rpc import HostNetworkPlan, NetworkPlan, NetworkStateApplied, NicSpec, PortPlan
from tests.unit.compute_tasks.test_compute_domain_xml import make_request as xml_request
from tests.unit.compute_tasks.test_compute_domain_xml import render
from tests.unit.compute_tasks.test_compute_manager import RecordingReporter, StubImages, make_request, ref_for

pytestmark = pytest.mark.unit


# --- configuration -------------------------------------------------------------------------------


def test_the_null_data_plane_is_the_default_where_guests_are_not_real():
    assert HostConfig.from_env({"COMPUTE_HOST": "a", "COMPUTE_DRIVER": "fake"}).dataplane == "none"
    assert HostConfig.from_env({"COMPUTE_HOST": "a", "COMPUTE_LIBVIRT_URI": "test:///default"}).dataplane == "none"
    assert HostConfig.from_env({"COMPUTE_HOSTS": "sim-[1-3]"}).dataplane == "none"
    assert HostConfig.from_env({"COMPUTE_HOST": "a"}).dataplane == "linux"


def test_data_plane_settings_come_from_the_environment():
    config = HostConfig.from_env(
        {
            "COMPUTE_HOST": "a",
            "COMPUTE_DATAPLANE": "linux",
            "COMPUTE_TUNNEL_ADDRESS": "10.251.0.1",
            "COMPUTE_VXLAN_PORT": "4790",
            "COMPUTE_NETWORK_NAMESPACE": "hv-a",
            "COMPUTE_PHYSICAL_NETWORKS": "public:br-public, lab:eth1",
            "COMPUTE_NETWORK_CHECK_INTERVAL": "2.5",
        }
    )
    assert (config.tunnel_address, config.vxlan_port, config.network_namespace) == ("10.251.0.1", 4790, "hv-a")
    assert config.physical_networks == (("public", "br-public"), ("lab", "eth1"))
    assert config.network_check_interval == 2.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COMPUTE_DATAPLANE": "ovs"}, "COMPUTE_DATAPLANE='ovs' is not one of linux, none"),
        ({"COMPUTE_TUNNEL_ADDRESS": "0.0.0.0"}, "COMPUTE_TUNNEL_ADDRESS"),  # noqa: S104 - refused
        ({"COMPUTE_TUNNEL_ADDRESS": "host-a"}, "is not an IP address"),
        ({"COMPUTE_VXLAN_PORT": "70000"}, "COMPUTE_VXLAN_PORT=70000 is not a UDP port"),
        ({"COMPUTE_NETWORK_NAMESPACE": "../x"}, "COMPUTE_NETWORK_NAMESPACE"),
        ({"COMPUTE_PHYSICAL_NETWORKS": "public"}, "is not 'name:device'"),
        ({"COMPUTE_PHYSICAL_NETWORKS": "public:a-very-long-device-name"}, "at most 15 characters"),
        ({"COMPUTE_PHYSICAL_NETWORKS": "p:br1,p:br2"}, "names 'p' twice"),
        ({"COMPUTE_NETWORK_CHECK_INTERVAL": "0"}, "COMPUTE_NETWORK_CHECK_INTERVAL"),
        ({"COMPUTE_HOSTS": "sim-[1-2]", "COMPUTE_DATAPLANE": "linux"}, "cannot serve the simulated hosts"),
    ],
)
def test_invalid_data_plane_settings_stop_the_worker_with_a_clear_message(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        HostConfig.from_env({"COMPUTE_HOST": "sim-1", **env})


# --- the manager ----------------------------------------------------------------------------------


class Reporter(RecordingReporter):
    def network_state_applied(self, result):
        self.sent.append(result)


class CountingPlane(NullDataplane):
    """The null data plane, counting the instances whose ports were plugged, and plugging only those; its
    guests announce themselves as a real data plane's do."""

    _announce = Dataplane._announce

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.plugs = []
        self.up = set()

    def _reconcile(self, plan, previous):
        outcome = super()._reconcile(plan, previous)
        outcome.plugged &= self.up
        return outcome

    def _plug(self, plan, ports):
        self.plugs.append({p.instance_uuid for p in ports})
        self.up |= {p.port_id for p in ports}
        return {p.port_id for p in ports}


@pytest.fixture
def setup(tmp_path):
    config = HostConfig.from_env(
        {"COMPUTE_HOST": "hv-test", "COMPUTE_DRIVER": "fake", "COMPUTE_STATE_DIR": str(tmp_path / "state")}
    )
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"base")
    reporter = Reporter()
    plane = CountingPlane("hv-test", config.state_dir, tunnel_address="10.0.0.1", physical_networks=[("public", "br")])
    manager = ComputeManager(
        config, FakeDriver(instances_dir=config.instances_dir), reporter, images=StubImages(base), dataplane=plane
    )
    return manager, reporter, plane


def plan_with(instance_uuid, generation=1, host="hv-test"):
    port_id = str(uuid.uuid4())
    port = PortPlan(port_id=port_id, mac="fa:16:3e:00:00:01", device=f"tap{port_id[:11]}", instance_uuid=instance_uuid)
    network = NetworkPlan(network_id=str(uuid.uuid4()), network_type="vxlan", mtu=1450, segmentation_id=7, ports=[port])
    return HostNetworkPlan(host=host, generation=generation, networks=[network]), port


def test_a_plan_is_applied_reported_and_kept_and_a_guests_ports_plugged_when_it_runs(setup, tmp_path):
    manager, reporter, plane = setup
    request = make_request()
    plan, port = plan_with(request.instance_uuid, generation=4)

    manager.apply_network_state(plan)
    (report,) = [m for m in reporter.sent if isinstance(m, NetworkStateApplied)]
    assert (report.host, report.generation, report.plugged_ports) == ("hv-test", 4, [])  # no guest yet

    manager.build_and_run_instance(request)
    assert plane.plugs == [{request.instance_uuid}]
    plugged = [m for m in reporter.sent if isinstance(m, NetworkStateApplied)][-1]
    assert plugged.plugged_ports == [port.port_id]
    manager.start_instance(ref_for(request))
    assert len(plane.plugs) == 2
    assert len([m for m in reporter.sent if isinstance(m, NetworkStateApplied)]) == 2  # nothing changed: no report

    beat = manager.heartbeat()
    assert (beat.network_generation, beat.tunnel_address, beat.physical_networks) == (4, "10.0.0.1", ["public"])

    # A restarted host finds its plan where it left it.
    again = CountingPlane("hv-test", manager.config.state_dir)
    assert again.generation == 4 and again.plan == plan
    assert again.resume().generation == 4


def test_a_plan_for_another_host_is_refused(setup):
    manager, reporter, plane = setup
    plan, _port = plan_with(str(uuid.uuid4()), host="hv-other")
    manager.apply_network_state(plan)
    assert reporter.sent == [] and plane.generation == 0


def test_an_older_plan_is_applied_and_reported_as_such_so_the_control_plane_sends_the_current_one(setup):
    manager, reporter, plane = setup
    newer, _ = plan_with(str(uuid.uuid4()), generation=5)
    older, _ = plan_with(str(uuid.uuid4()), generation=3)
    manager.apply_network_state(newer)
    manager.apply_network_state(older)
    assert plane.plan == older
    assert [m.generation for m in reporter.sent] == [5, 3]
    assert manager.heartbeat().network_generation == 3


def test_the_check_reports_only_what_changed(setup):
    manager, reporter, plane = setup
    plan, port = plan_with(str(uuid.uuid4()))
    manager.apply_network_state(plan)
    manager.check_network()
    assert len(reporter.sent) == 1
    plane.up.add(port.port_id)  # the guest's tap appeared
    manager.check_network()
    assert reporter.sent[-1].plugged_ports == [port.port_id]


def test_a_lasting_problem_is_reported_once(setup):
    manager, reporter, plane = setup

    def broken(plan, previous):
        raise RuntimeError("the namespace is gone")

    plan, _port = plan_with(str(uuid.uuid4()))
    manager.apply_network_state(plan)
    plane._reconcile = broken
    manager.check_network()
    manager.check_network()
    errors = [m.error for m in reporter.sent]
    assert errors == ["", "RuntimeError: the namespace is gone"]


def test_a_guest_whose_port_was_just_plugged_announces_itself_once(setup, caplog):
    manager, _reporter, plane = setup
    request = make_request()
    manager.build_and_run_instance(request)  # running, as after a live migration's arrival
    plan, port = plan_with(request.instance_uuid)
    _stranger_plan, stranger_port = plan_with(str(uuid.uuid4()), generation=2)  # no guest of that name here
    plan.networks[0].ports.append(stranger_port)

    def announced():
        return [instance for method, instance in manager.driver.calls if method == "announce"]

    manager.apply_network_state(plan)
    assert announced() == []  # its tap is not there yet
    plane.up |= {port.port_id, stranger_port.port_id}
    manager.check_network()
    assert sorted(announced()) == sorted([request.instance_uuid, stranger_port.instance_uuid])
    assert "could not announce itself" in caplog.text  # the stranger's failure stops nothing
    manager.apply_network_state(plan)
    manager.check_network()
    manager.start_instance(ref_for(request))
    assert len(announced()) == 2  # plugged already: once each


def test_the_null_data_plane_reports_every_planned_port_plugged(tmp_path):
    plan, port = plan_with(str(uuid.uuid4()))
    assert NullDataplane("hv-test", tmp_path).apply(plan).plugged_ports == [port.port_id]
    assert issubclass(NullDataplane, Dataplane)


# --- the domain XML of a port's NIC -------------------------------------------------------------------


def test_a_port_nic_is_an_ethernet_interface_on_the_ports_tap():
    nic = NicSpec(mac="FA:16:3E:00:00:01", network="port", port_id="p", device="tap0123abcd-45", mtu=1450)
    xml = render(xml_request(nics=[nic]))
    assert '<interface type="ethernet">' in xml
    assert '<target dev="tap0123abcd-45" />' in xml and '<mtu size="1450" />' in xml
    assert '<mac address="fa:16:3e:00:00:01" />' in xml and '<model type="virtio" />' in xml
    assert domain_xml.port_nics(xml) == [("fa:16:3e:00:00:01", "tap0123abcd-45")]


@pytest.mark.parametrize("device", ["", "eth0", "vnet0", "tap0123abcd-45x", "tap'/>"])
def test_a_port_nic_on_anything_but_a_tap_is_refused(device):
    nic = NicSpec(mac="fa:16:3e:00:00:01", network="port", device=device)
    with pytest.raises(InvalidDomainSpec, match="tap"):
        render(xml_request(nics=[nic]))
