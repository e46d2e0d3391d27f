"""Random bytes from the operating system for ids and nonces, drawn a block at a time.

`os.urandom` gives up the interpreter lock for its system call, and under load the event loop
then waits to take it back behind the database threads: in the registrations phase (an id for
the patient, its event and its audit record, a nonce for every encrypted field) those calls held
~6 % of the event loop's samples (BENCHMARKS.md, session 15). Here the same source, the kernel's
generator, is read 4 KiB at a time and handed out in slices: one system call per ~400 ids.

Each thread draws from a block of its own and a forked child starts without one, so no two
callers and no two processes are ever handed the same bytes (a repeated AES-GCM nonce under one
key would give the key away). Keys are not drawn from here: they are secret, rare, and taken
straight from `secrets`. Python's `random` is not an option for nonces; no library offers a
buffered reader of the OS generator, and this is a few lines.
"""

from __future__ import annotations

import os
import threading

BLOCK_BYTES = 4096


class _Block(threading.local):
    def __init__(self) -> None:
        self.data = b""
        self.at = 0


_block = _Block()


def token_bytes(count: int) -> bytes:
    """`count` bytes from the OS generator, never handed out before."""
    block = _block
    end = block.at + count
    if end > len(block.data):
        if count > BLOCK_BYTES:
            return os.urandom(count)
        block.data, block.at, end = os.urandom(BLOCK_BYTES), 0, count
    taken = block.data[block.at : end]
    block.at = end
    return taken


def _forget_in_child() -> None:
    global _block
    _block = _Block()  # the parent's unspent bytes are the parent's alone


os.register_at_fork(after_in_child=_forget_in_child)
