"""The instance registry and the fair share of spaces, as tables."""

from __future__ import annotations

import os
from collections import Counter
from itertools import permutations

import pytest

from vacagent.state import formats
from vacagent.state.instances import Instance, Registry, assign, live, mismatch

SIX = [f"s{n}" for n in range(6)]


def loads(target):
    return sorted(Counter(target.values()).values())


@pytest.mark.parametrize(
    "spaces, instances, holders, shares",
    [
        (SIX, ["a"], {}, [6]),
        (SIX, ["a", "b", "c"], {}, [2, 2, 2]),  # simultaneous start: everyone agrees on a split
        (SIX, ["a", "b", "c"], {s: "a" for s in SIX}, [2, 2, 2]),  # a held everything: b and c join
        (SIX, ["a", "b", "c", "d"], {}, [1, 1, 2, 2]),
        (SIX[:2], ["a", "b", "c"], {}, [1, 1]),  # fewer spaces than instances
        ([], ["a", "b"], {}, []),
    ],
)
def test_shares_are_floor_or_ceil(spaces, instances, holders, shares):
    assert loads(assign(spaces, instances, holders)) == shares


def test_a_balanced_site_moves_nothing():
    """No flapping: whatever balanced holding there is, it is the target."""
    holders = {"s0": "a", "s1": "a", "s2": "b", "s3": "c", "s4": "c", "s5": "b"}
    assert assign(SIX, ["a", "b", "c"], holders) == holders
    uneven = {"s0": "a", "s1": "a", "s2": "b", "s3": "c"}  # 4 spaces over 3: a keeps its 2
    assert assign(SIX[:4], ["a", "b", "c"], uneven) == uneven


def test_the_target_is_a_fixed_point():
    """Applying the target and computing again changes nothing, from any start."""
    for order in permutations(["a", "b", "c"]):
        holders = {s: order[n % 2] for n, s in enumerate(SIX)}  # c holds nothing
        target = assign(SIX, order, holders)
        assert assign(SIX, order, target) == target
        assert loads(target) == [2, 2, 2]


def test_holders_keep_what_they_can():
    holders = {s: "a" for s in SIX}
    target = assign(SIX, ["a", "b", "c"], holders)
    assert sum(1 for s in SIX if target[s] == "a") == 2  # a keeps two, gives up four; no space moves twice


def test_a_dead_instance_s_spaces_are_shared_out():
    holders = {"s0": "a", "s1": "a", "s2": "b", "s3": "b", "s4": "c", "s5": "c"}
    target = assign(SIX, ["a", "b"], {s: h for s, h in holders.items() if h != "c"})
    assert loads(target) == [3, 3]
    assert all(target[s] == h for s, h in holders.items() if h != "c")


def test_refused_spaces_go_to_instances_that_read_them():
    target = assign(SIX, ["old", "new"], {}, {"old": ["s0", "s1", "s2", "s3"]})
    assert {target[s] for s in ["s0", "s1", "s2", "s3"]} == {"new"}
    assert set(target) == set(SIX)
    assert assign(["s0"], ["old"], {}, {"old": ["s0"]}) == {}


def instance(id, spaces, site="lab", last_seen=100.0, stopping=False):
    return Instance(id, "host", 1, "0", 0.0, last_seen, site, spaces, stopping=stopping)


@pytest.mark.parametrize(
    "others, expected",
    [
        ([instance("b", {"x": "1", "y": "2"})], None),
        ([instance("b", {"x": "1"})], "only here: y"),
        ([instance("b", {"x": "1", "y": "2", "z": "3"})], "only there: z"),
        ([instance("b", {"x": "1", "y": "9"})], "configured differently: y"),
        ([instance("b", {"x": "1", "y": "2"}, site="other")], "runs site 'other'"),
    ],
)
def test_mismatch_says_which_spaces(others, expected):
    why = mismatch(instance("a", {"x": "1", "y": "2"}), others)
    if expected is None:
        assert why is None
    else:
        assert expected in why and "instance b" in why


def test_live_leaves_out_the_dead_and_the_stopping():
    entries = [instance("a", {}, last_seen=100.0), instance("b", {}, last_seen=69.0),
               instance("c", {}, last_seen=99.0, stopping=True)]
    assert [i.id for i in live(entries, 100.0, 30.0)] == ["a"]


def test_registry_round_trip_and_prune(tmp_path):
    registry = Registry(tmp_path)
    registry.write(instance("a", {"x": "1"}, last_seen=100.0))
    registry.write(instance("b", {"x": "1"}, last_seen=50.0))
    assert [i.id for i in registry.read()] == ["a", "b"]
    assert registry.read()[0].spaces == {"x": "1"}
    assert registry.prune(100.0, 30.0, keep="a") == ["b"]
    assert [i.id for i in registry.read()] == ["a"]


def test_a_refreshed_entry_stays_alive_without_a_write(tmp_path):
    """On a full disk only the entry's mtime moves: readers take it as last_seen."""
    registry = Registry(tmp_path)
    registry.write(instance("a", {}, last_seen=100.0))
    registry.refresh(instance("a", {}, last_seen=160.0))
    assert [i.last_seen for i in registry.read()] == [160.0]
    assert registry.prune(170.0, 30.0, keep="z") == []
    assert registry.prune(190.0, 30.0, keep="z") == ["a"]


def test_an_unreadable_entry_is_pruned_once_old(tmp_path):
    registry = Registry(tmp_path)
    registry.write(instance("a", {}, last_seen=100.0))
    damaged = registry.path("torn")
    damaged.write_text('{"id": "torn", "ho')
    os.utime(damaged, (100.0, 100.0))
    assert [i.id for i in registry.read()] == ["a"]
    assert registry.prune(110.0, 30.0, keep="a") == []
    assert registry.prune(131.0, 30.0, keep="a") == ["torn"] and not damaged.exists()


def test_an_entry_in_a_newer_format_is_left_out(tmp_path, monkeypatch):
    registry = Registry(tmp_path)
    registry.write(instance("new", {}))
    monkeypatch.setattr(formats, "FORMAT", 1)
    assert registry.read() == []


def test_a_reused_pid_is_not_the_instance_that_wrote_the_entry():
    """The same instance_name on the same host is refused only while the entry's own process runs."""
    from vacagent import coordinator

    started = coordinator._process_start(os.getpid())
    assert started is not None
    assert coordinator._running(os.getpid(), seen=started + 60)  # this process wrote it, and still runs
    assert not coordinator._running(os.getpid(), seen=started - 60)  # written before this process existed
