"""The extra spec rules: known keys check their values, known namespaces are strict only on request."""

import pytest

from portal.services.extra_specs import InvalidExtraSpec, extra_spec_problem, extra_specs_validate, rule_for

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("hw:cpu_policy", "dedicated"),
        ("hw:cpu_thread_policy", "isolate"),
        ("hw:mem_page_size", "large"),
        ("hw:mem_page_size", "1GiB"),
        ("hw:mem_page_size", "2048"),
        ("hw:numa_nodes", "4"),
        ("hw:numa_cpus.1", "2-3,^2"),
        ("hw:numa_mem.1", "1024"),
        ("hw:cpu_realtime_mask", "^0-1"),
        ("hw_rng:allowed", "yes"),
        ("hw_rng:allowed", "False"),
        ("hw:watchdog_action", "reset"),
        ("quota:cpu_quota", "-1"),
        ("quota:vif_inbound_peak", "1000"),
        ("quota:memory_shares_level", "custom"),
        ("trait:COMPUTE_STATUS_DISABLED", "forbidden"),
        ("traitgroup_1:CUSTOM_X", "required"),
        ("resources:MEMORY_MB", "512"),
        ("resources2:CUSTOM_WIDGET", "3"),
        ("pci_passthrough:alias", "gpu:2, nic:1"),
        ("group_policy", "isolate"),
        ("capabilities:cpu_info:features", "<in> avx"),
        ("os:secure_boot", "required"),
    ],
)
def test_valid_values_pass(name, value):
    assert extra_spec_problem(name, value, strict=True) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("hw:cpu_policy", "Dedicated"),
        ("hw:mem_page_size", "2 MB"),
        ("hw:numa_nodes", "1.5"),
        ("hw:numa_mem.0", "0"),
        ("hw:redirected_usb_ports", "16"),
        ("hw_rng:allowed", "2"),
        ("trait:CUSTOM_X", "yes"),
        ("resources:VCPU", "one"),
        ("pci_passthrough:alias", "gpu"),
        ("group_policy", "strict"),
    ],
)
def test_invalid_values_fail_at_every_version(name, value):
    assert extra_spec_problem(name, value) is not None
    with pytest.raises(InvalidExtraSpec, match="Validation failed"):
        extra_specs_validate({name: value})


@pytest.mark.parametrize(
    "name", ["hw:bogus", "hw_rng:bogus", "quota:bogus", "trait:lower_case", "resources:NOT_A_CLASS"]
)
def test_unknown_keys_of_known_namespaces_fail_only_when_strict(name):
    assert extra_spec_problem(name, "1") is None
    assert "does not appear to be a valid extra spec" in extra_spec_problem(name, "1", strict=True)


@pytest.mark.parametrize("name", ["vendor:thing", "no_namespace", "hwx:cpu", "custom:hw:cpu_policy"])
def test_other_namespaces_are_free_form(name):
    assert rule_for(name) is None
    assert extra_spec_problem(name, "anything", strict=True) is None
