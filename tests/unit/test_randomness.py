"""Ids' and nonces' random bytes: drawn a block at a time, never handed out twice."""

from __future__ import annotations

import os
import threading

import pytest

from healthflow import randomness


def test_draws_have_the_length_asked_for_and_never_repeat() -> None:
    draws = [randomness.token_bytes(12) for _ in range(2_000)]  # spans several blocks
    assert {len(d) for d in draws} == {12}
    assert len(set(draws)) == len(draws)
    big = randomness.token_bytes(randomness.BLOCK_BYTES + 1)  # more than a block: from the OS
    assert len(big) == randomness.BLOCK_BYTES + 1


def test_threads_draw_from_blocks_of_their_own() -> None:
    drawn: list[list[bytes]] = [[] for _ in range(4)]
    taken_from_own_block: list[int] = []
    start, first_drawn = threading.Barrier(4), threading.Barrier(4)

    def draw(into: list[bytes]) -> None:
        start.wait()
        into.append(randomness.token_bytes(12))
        first_drawn.wait()  # all four drew once: a shared block would be 48 bytes in
        taken_from_own_block.append(randomness._block.at)
        into.extend(randomness.token_bytes(12) for _ in range(2_999))

    threads = [threading.Thread(target=draw, args=(d,)) for d in drawn]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert taken_from_own_block == [12, 12, 12, 12]
    every = [d for per_thread in drawn for d in per_thread]
    assert len(set(every)) == len(every) == 12_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_unspent_bytes() -> None:
    randomness.token_bytes(12)  # the parent holds a block with bytes left in it
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write_end, randomness.token_bytes(32))
        os._exit(0)
    os.close(write_end)
    from_child = os.read(read_end, 32)
    os.close(read_end)
    os.waitpid(child, 0)
    assert len(from_child) == 32
    assert randomness.token_bytes(32) != from_child
