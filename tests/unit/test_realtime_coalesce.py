"""Coalescing: the first of a quiet key passes, then at most one per interval, the newest."""

from __future__ import annotations

from healthflow.realtime.coalesce import Coalescer


class Ticks:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_first_item_passes_and_the_burst_collapses_into_the_newest() -> None:
    ticks = Ticks()
    coalescer: Coalescer[int] = Coalescer(0.5, ticks)
    assert coalescer.offer("p1", 1) == 1
    assert [coalescer.offer("p1", n) for n in range(2, 6)] == [None] * 4
    assert coalescer.due() == []
    ticks.t += 0.5
    assert coalescer.due() == [5]
    assert coalescer.coalesced == 3
    assert coalescer.pending == 0


def test_keys_are_independent() -> None:
    ticks = Ticks()
    coalescer: Coalescer[str] = Coalescer(1.0, ticks)
    assert coalescer.offer("a", "a1") == "a1"
    assert coalescer.offer("b", "b1") == "b1"
    assert coalescer.offer("a", "a2") is None
    ticks.t += 1.0
    assert coalescer.due() == ["a2"]


def test_an_item_after_a_quiet_interval_passes_at_once_and_drops_the_held_one() -> None:
    ticks = Ticks()
    coalescer: Coalescer[int] = Coalescer(1.0, ticks)
    coalescer.offer("p", 1)
    coalescer.offer("p", 2)
    ticks.t += 1.5
    assert coalescer.offer("p", 3) == 3
    assert coalescer.due() == []
    assert coalescer.coalesced == 1


def test_quiet_keys_are_forgotten() -> None:
    ticks = Ticks()
    coalescer: Coalescer[int] = Coalescer(1.0, ticks)
    for key in range(100):
        coalescer.offer(str(key), key)
    ticks.t += 2
    coalescer.due()
    assert coalescer._last_sent == {}
