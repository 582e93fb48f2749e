"""The cloud size fit rule (backends/sizing.py): the first candidate that fits, as a table."""

import pytest

from vacagent.backends.sizing import Size, candidates, choose, processor_range
from vacagent.model import MachineType

SMALL, MEDIUM, LARGE, BIG = Size("small", 2, 1024), Size("medium", 2, 4096), Size("large", 4, 16384), Size("big", 8, 32768)


@pytest.mark.parametrize("processors,extra,mb,sizes,expected", [
    (2, {}, 2048, [SMALL, MEDIUM, LARGE], "medium"),  # small has too little memory
    (2, {}, 512, [SMALL, MEDIUM], "small"),  # the first that fits wins
    (4, {}, 2048, [MEDIUM, LARGE], "large"),
    (8, {"min_processors": 2}, 2048, [MEDIUM, BIG], "medium"),  # a range takes a smaller machine
    (4, {}, 2048, [BIG], None),  # never more vCPUs than the planner counted
    (4, {}, 8192, [LARGE], None),  # 4 x 8192 > 16384
])
def test_first_fitting_candidate(processors, extra, mb, sizes, expected):
    mt = MachineType("mt", processors=processors, mb_per_processor=mb, extra=extra)
    chosen = choose(sizes, mt)
    assert (chosen.name if chosen else None) == expected


def test_range_and_candidates():
    assert processor_range(MachineType("mt", processors=4, extra={"min_processors": 9})) == (4, 4)
    own = MachineType("mt", extra={"instance_type": "c5.large"})
    assert candidates(own, {"instance_types": ["a", "b"]}, "instance_types", "instance_type") == ["c5.large"]
    assert candidates(MachineType("mt"), {"instance_types": ["a", "b"]}, "instance_types", "instance_type") == ["a", "b"]
