"""Space leases: the pure decisions as tables, then the files (claims by O_EXCL, fencing)."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from vacagent.clock import FakeClock
from vacagent.state import formats
from vacagent.state.lease import Fence, Lease, LeaseLost, SpaceLease, free, in_force, trusted

A = Lease("a", 3, 100.0, 130.0)


@pytest.mark.parametrize(
    "renewed, claimed, expected",
    [
        (None, None, None),
        (A, None, A),
        (A, Lease("a", 3, 100.0, 130.0), A),  # lease.json speaks of the newest epoch
        (A, Lease("b", 4, 140.0, 170.0), Lease("b", 4, 140.0, 170.0)),  # claimer not yet (or never) wrote lease.json
        (None, Lease("b", 1, 10.0, 40.0), Lease("b", 1, 10.0, 40.0)),
        (Lease("a", 5, 1.0, 2.0), Lease("b", 4, 0.0, 1.0), Lease("a", 5, 1.0, 2.0)),
        (A, Lease("a", 3, 100.0, 190.0), Lease("a", 3, 100.0, 190.0)),  # renewed in place (full disk)
    ],
)
def test_in_force(renewed, claimed, expected):
    assert in_force(renewed, claimed) == expected


@pytest.mark.parametrize(
    "lease, now, expected",
    [
        (None, 0.0, True),  # never held
        (A, 129.9, False),
        (A, 130.0, True),  # expired exactly at expires_at
        (Lease("a", 3, 100.0, 130.0, released=True), 101.0, True),  # released: free at once
    ],
)
def test_free(lease, now, expected):
    assert free(lease, now) is expected


@pytest.mark.parametrize(
    "now, margin, expected",
    [
        (100.0, 10.0, True),
        (119.9, 10.0, True),
        (120.0, 10.0, False),  # the holder stops `margin` before others may claim
        (125.0, 0.0, True),
    ],
)
def test_trusted(now, margin, expected):
    assert trusted(A, now, margin) is expected


def test_released_lease_is_not_trusted():
    assert not trusted(Lease("a", 1, 0.0, 100.0, released=True), 1.0, 0.0)


def test_claims_number_epochs_without_gaps(tmp_path):
    leases = SpaceLease(tmp_path, "lab")
    first = leases.claim("a", 100.0, 30.0, None)
    assert first == Lease("a", 1, 100.0, 130.0)
    assert leases.read(30.0) == first
    second = leases.claim("b", 131.0, 30.0, first)
    assert second.epoch == 2 and leases.read(30.0).holder == "b"
    assert leases.superseded(1) and not leases.superseded(2)
    assert formats.read(leases.epoch_path(2))["previous_holder"] == "a"


def test_a_claim_for_an_old_view_loses(tmp_path):
    leases = SpaceLease(tmp_path, "lab")
    seen = leases.claim("a", 100.0, 30.0, None)
    leases.claim("b", 140.0, 30.0, seen)
    # c read epoch 1 and decided it was free; b claimed epoch 2 meanwhile: c must not take over.
    assert leases.claim("c", 141.0, 30.0, seen) is None
    assert leases.read(30.0).holder == "b"


def _race(root, holder, results):
    leases = SpaceLease(root, "lab")
    lease = leases.claim(holder, 100.0, 30.0, None)
    results.put((holder, lease.epoch if lease else None))


def test_exactly_one_of_many_simultaneous_claimers_wins(tmp_path):
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_race, args=(tmp_path, f"i{n}", results)) for n in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    outcome = [results.get() for _ in procs]
    winners = [h for h, epoch in outcome if epoch is not None]
    assert len(winners) == 1, outcome
    assert SpaceLease(tmp_path, "lab").read(30.0).holder == winners[0]


def test_an_empty_claim_file_counts_as_claimed_at_its_mtime(tmp_path):
    """A claimer killed between creating its epoch file and writing it."""
    leases = SpaceLease(tmp_path, "lab")
    leases.epochs.mkdir(parents=True)
    leases.epoch_path(1).touch()
    os.utime(leases.epoch_path(1), (1000.0, 1000.0))
    lease = leases.read(30.0)
    assert (lease.epoch, lease.expires_at) == (1, 1030.0)
    assert leases.claim("b", 1031.0, 30.0, lease).epoch == 2


def test_release_never_overwrites_a_newer_holder(tmp_path):
    leases = SpaceLease(tmp_path, "lab")
    old = leases.claim("a", 100.0, 30.0, None)
    new = leases.claim("b", 131.0, 30.0, old)
    leases.release(old, 132.0)
    assert leases.read(30.0) == new


def test_fence_confirms_and_stops(tmp_path):
    clock = FakeClock(100.0)
    leases = SpaceLease(tmp_path, "lab")
    lease = leases.claim("a", clock.now(), 30.0, None)
    fence = Fence(leases, lease, clock, margin=10.0)
    fence.confirm("creating", "m-1")
    clock.advance(19.0)
    fence.confirm("creating", "m-2")  # still trusted: 119 < 130 - 10
    fence.renewed(leases.renew(lease, clock.now(), 30.0))
    clock.advance(15.0)
    fence.confirm("deleting", "m-1")  # renewed at 119: trusted until 139
    leases.claim("b", clock.now(), 30.0, lease)  # b claims epoch 2 (as if a's lease had expired)
    with pytest.raises(LeaseLost, match="superseded"):
        fence.confirm("creating", "m-3")
    assert fence.lost  # and it stays lost


def test_fence_stops_when_not_renewed_in_time(tmp_path):
    clock = FakeClock(100.0)
    leases = SpaceLease(tmp_path, "lab")
    fence = Fence(leases, leases.claim("a", clock.now(), 30.0, None), clock, margin=10.0)
    clock.advance(20.0)
    with pytest.raises(LeaseLost, match="not renewed in time"):
        fence.confirm("creating", "m-1")


def test_a_newer_lease_format_is_refused(tmp_path, monkeypatch):
    leases = SpaceLease(tmp_path, "lab")
    leases.claim("a", 100.0, 30.0, None)
    monkeypatch.setattr(formats, "FORMAT", 1)  # this code pretends to be an older vacagent
    with pytest.raises(formats.FormatTooNew, match=r"epochs/000000000001.json: format 2"):
        leases.read(30.0)


def test_a_lease_renewed_in_place_stays_in_force_for_every_reader(tmp_path):
    """A full disk: the holder moves its claim file's mtime; lease.json is left as it was."""
    leases = SpaceLease(tmp_path, "s")
    lease = leases.claim("a", 100.0, 30.0, None)
    before = leases.path.read_bytes()
    renewed = leases.renew_in_place(lease, 125.0, 30.0)
    assert renewed.expires_at == 155.0 and leases.path.read_bytes() == before
    seen = SpaceLease(tmp_path, "s").read(30.0)
    assert (seen.holder, seen.epoch, seen.expires_at) == ("a", 1, 155.0)
    assert not free(seen, 150.0) and free(seen, 155.0)
