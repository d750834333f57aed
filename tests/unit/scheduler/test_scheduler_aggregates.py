import pytest

from scheduler.aggregates import allocation_ratio, availability_zone, max_instances, merge_metadata, tenant_ids

pytestmark = pytest.mark.unit


def test_merge_collects_every_value_of_each_key():
    merged = merge_metadata([{"ssd": "true", "availability_zone": "az1"}, {"ssd": "false"}, {}])
    assert merged == {"ssd": frozenset({"true", "false"}), "availability_zone": frozenset({"az1"})}


def test_no_aggregates_merge_to_empty_metadata():
    assert merge_metadata([]) == {}
    assert not merge_metadata([{}, {}])


def test_zone_comes_from_the_aggregates_else_the_default():
    assert availability_zone(merge_metadata([{"availability_zone": "az1"}]), "nova") == "az1"
    assert availability_zone(merge_metadata([{"ssd": "true"}]), "nova") == "nova"
    # Two zones is a mistake: the host shows both and matches neither.
    assert availability_zone(merge_metadata([{"availability_zone": "b"}, {"availability_zone": "a"}]), "nova") == "a,b"


@pytest.mark.parametrize(
    ("host_ratio", "aggregates", "expected"),
    [
        (2.0, [{"cpu_allocation_ratio": "8.0"}], 2.0),  # the host's own ratio wins
        (None, [{"cpu_allocation_ratio": "8.0"}, {"cpu_allocation_ratio": "3"}], 3.0),  # the safest aggregate
        (None, [{"cpu_allocation_ratio": "lots"}, {"cpu_allocation_ratio": "-1"}], 4.0),  # nonsense is ignored
        (None, [], 4.0),  # the default
        (0.0, [{"cpu_allocation_ratio": "6"}], 6.0),  # zero is no ratio
    ],
)
def test_allocation_ratio_precedence(host_ratio, aggregates, expected):
    assert allocation_ratio(host_ratio, merge_metadata(aggregates), "cpu_allocation_ratio", 4.0) == expected


def test_max_instances_is_the_smallest_limit_of_the_aggregates():
    assert max_instances(merge_metadata([{"max_instances_per_host": "10"}, {"max_instances_per_host": "4"}])) == 4
    assert max_instances(merge_metadata([{"max_instances_per_host": "many"}])) is None
    assert max_instances(merge_metadata([])) is None


def test_tenant_ids_read_every_filter_tenant_id_key_and_split_lists():
    merged = merge_metadata([{"filter_tenant_id": "a, b"}, {"filter_tenant_id_extra": "c", "other": "d"}])
    assert tenant_ids(merged) == {"a", "b", "c"}
    assert tenant_ids(merge_metadata([{"ssd": "true"}])) == frozenset()
