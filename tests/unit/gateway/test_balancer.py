"""Load-balancing policies and passive ejection (pure logic)."""

from __future__ import annotations

from collections import Counter

import pytest

from kumo.platform.gateway.balancer import LeastRequest, RoundRobin, Upstream, make_balancer


def upstreams(count: int) -> list[Upstream]:
    return [Upstream("127.0.0.1", 30000 + i) for i in range(count)]


def test_round_robin_takes_each_in_turn() -> None:
    pool = upstreams(3)
    balancer = RoundRobin(pool)
    picks = [balancer.pick(0.0) for _ in range(9)]
    assert picks == pool * 3


def test_round_robin_skips_ejected_and_excluded() -> None:
    pool = upstreams(3)
    balancer = RoundRobin(pool)
    pool[1].eject(now=10.0, base=1.0, cap=30.0)
    assert [balancer.pick(10.5) for _ in range(4)] == [pool[0], pool[2], pool[0], pool[2]]
    assert balancer.pick(10.5, exclude={pool[0]}) is pool[2]
    # once the ejection is over, it is back in turn
    counts = Counter(balancer.pick(11.0) for _ in range(30))
    assert counts == {pool[0]: 10, pool[1]: 10, pool[2]: 10}


def test_when_all_are_ejected_the_soonest_back_is_tried() -> None:
    pool = upstreams(3)
    for upstream, until in zip(pool, (5.0, 2.0, 9.0), strict=True):
        upstream.ejected_until = until
    for balancer in (RoundRobin(pool), LeastRequest(pool)):
        assert balancer.pick(1.0) is pool[1]
        assert balancer.pick(1.0, exclude={pool[1]}) is pool[0]
        assert balancer.pick(1.0, exclude=set(pool)) is None


def test_empty_pools_pick_nothing() -> None:
    assert RoundRobin([]).pick(0.0) is None
    assert LeastRequest([]).pick(0.0) is None


def test_least_request_prefers_fewest_outstanding() -> None:
    pool = upstreams(3)
    balancer = LeastRequest(pool)
    pool[0].outstanding = 4
    pool[1].outstanding = 1
    pool[2].outstanding = 2
    assert balancer.pick(0.0) is pool[1]
    pool[1].outstanding = 5
    assert balancer.pick(0.0) is pool[2]
    pool[2].eject(now=0.0, base=1.0, cap=1.0)
    assert balancer.pick(0.5) is pool[0]


def test_least_request_spreads_ties_evenly() -> None:
    pool = upstreams(4)
    balancer = LeastRequest(pool)
    counts = Counter(balancer.pick(0.0) for _ in range(400))
    assert counts == dict.fromkeys(pool, 100)


def test_least_request_with_many_upstreams_avoids_the_busy_ones() -> None:
    pool = upstreams(100)
    for upstream in pool[:90]:
        upstream.outstanding = 50
    balancer = LeastRequest(pool)
    picks = [balancer.pick(0.0) for _ in range(1000)]
    assert all(p is not None for p in picks)
    idle_share = sum(1 for p in picks if p is not None and p.outstanding == 0) / len(picks)
    # two random choices find one of the ten idle upstreams about 19 % of the time, and the
    # full scan fallback is not used; far more than the 10 % of a blind random choice
    assert idle_share > 0.12


@pytest.mark.parametrize(
    ("ejections", "expected"), [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (60, 30.0)]
)
def test_ejection_doubles_up_to_the_cap(ejections: int, expected: float) -> None:
    upstream = Upstream("127.0.0.1", 1)
    for _ in range(ejections):
        duration = upstream.eject(now=100.0, base=1.0, cap=30.0)
    assert duration == expected
    assert upstream.ejected_until == 100.0 + expected
    assert not upstream.available(100.0 + expected - 0.01)
    assert upstream.available(100.0 + expected)


def test_a_success_resets_the_ejection_ladder() -> None:
    upstream = Upstream("127.0.0.1", 1)
    upstream.eject(now=0.0, base=1.0, cap=30.0)
    upstream.eject(now=1.0, base=1.0, cap=30.0)
    upstream.succeeded()
    assert upstream.eject(now=10.0, base=1.0, cap=30.0) == 1.0


def test_make_balancer_by_policy_name() -> None:
    assert isinstance(make_balancer("least-request", []), LeastRequest)
    assert isinstance(make_balancer("round-robin", []), RoundRobin)
