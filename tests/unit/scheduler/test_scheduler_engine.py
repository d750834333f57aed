import random

import pytest
from scheduler_builders import NOW, make_host, make_spec

from scheduler import HostState, NoValidHost, SchedulerConfig, Selection, check_config, select_hosts

pytestmark = pytest.mark.unit


def select(hosts, spec=None, **config):
    return select_hosts(hosts, spec or make_spec(), now=NOW, config=SchedulerConfig(**config))


def names(hosts):
    return [host.host for host in hosts]


def test_returns_every_passing_host_best_first():
    hosts = [
        make_host("down", last_heartbeat=NOW - 600),
        make_host("half-full", memory_mb_used=8192),
        make_host("empty"),
        make_host("full", memory_mb_used=16384),
    ]
    selection = select(hosts)
    assert isinstance(selection, Selection)
    assert names(selection.hosts) == ["empty", "half-full"]
    assert selection.best().host == "empty"
    assert names(selection.alternates(3)) == ["half-full"]


def test_the_callers_sequence_is_left_alone():
    hosts = (make_host("a", memory_mb_used=1000), make_host("b"))
    select(hosts)
    assert names(hosts) == ["a", "b"]


def test_only_the_configured_filters_run():
    full = make_host("full", memory_mb_used=16384)
    assert names(select([full], enabled_filters=["ComputeFilter"]).hosts) == ["full"]
    assert select([full]).hosts == []


def test_filters_stop_once_no_host_is_left():
    selection = select([make_host(enabled=False)])
    assert [step.name for step in selection.explanation.steps] == ["ComputeFilter"]


def test_ignore_hosts_are_never_chosen():
    hosts = [make_host("tried"), make_host("other", memory_mb_used=4096)]
    selection = select(hosts, make_spec(ignore_hosts=frozenset({"tried"})))
    assert names(selection.hosts) == ["other"]
    step = selection.explanation.steps[0]
    assert (step.name, step.removed, step.reasons) == ("ignore_hosts", 1, (("excluded by the request", 1),))


def test_best_raises_no_valid_host_carrying_the_explanation():
    selection = select([make_host(memory_mb_used=16384)])
    with pytest.raises(NoValidHost) as raised:
        selection.best()
    assert raised.value.explanation is selection.explanation
    assert str(raised.value) == "No valid host was found. 1 host: RamFilter removed 1 (not enough RAM)"


def test_no_hosts_at_all():
    selection = select([])
    assert selection.hosts == []
    assert str(selection.explanation) == "No valid host was found. There are no compute hosts."


def test_unknown_names_fail_with_a_message_that_names_them():
    with pytest.raises(ValueError, match="unknown scheduler filters: RamFiltre"):
        select([make_host()], enabled_filters=["ComputeFilter", "RamFiltre"])
    with pytest.raises(ValueError, match="unknown scheduler weighers: CPUWeighr"):
        check_config(SchedulerConfig(weighers={"CPUWeighr": 1.0}))
    check_config(SchedulerConfig())


def test_host_subset_size_picks_the_winner_among_the_best_few():
    hosts = [make_host(f"h{index}", memory_mb_used=index * 1024) for index in range(6)]
    winners = {
        select_hosts(hosts, make_spec(), now=NOW, config=SchedulerConfig(host_subset_size=3), rng=random.Random(seed))
        .best()
        .host
        for seed in range(50)
    }
    assert winners == {"h0", "h1", "h2"}


def test_host_subset_size_moves_only_the_winner():
    class PickThird(random.Random):
        def randrange(self, *args, **kwargs):
            return 2

    hosts = [make_host(f"h{index}", memory_mb_used=index * 1024) for index in range(5)]
    selection = select_hosts(hosts, make_spec(), now=NOW, config=SchedulerConfig(host_subset_size=3), rng=PickThird())
    assert names(selection.hosts) == ["h2", "h0", "h1", "h3", "h4"]
    assert selection.weights[0] == pytest.approx(0.5)


def test_a_batch_consumes_capacity_between_picks():
    hosts: list[HostState] = [
        make_host("big", memory_mb_total=6144),
        make_host("small", memory_mb_total=4096),
    ]
    spec = make_spec(memory_mb=3072, num_instances=3)
    chosen = []
    for _ in range(spec.num_instances):
        winner = select(hosts, spec).best()
        chosen.append(winner.host)
        hosts = [host.consume(spec) if host is winner else host for host in hosts]
    assert chosen == ["big", "small", "big"]
    with pytest.raises(NoValidHost, match="RamFilter removed 2"):
        select(hosts, spec).best()
