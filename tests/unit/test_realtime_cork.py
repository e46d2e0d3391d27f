"""The hub's WebSocket transport: a connection's writes of one loop turn leave together, in
order, and closing sends what is held first. Over a real socket pair."""

from __future__ import annotations

import asyncio
import socket

from healthflow.realtime.uvicorn_ws import _Cork, _CorkedTransport


async def _pair() -> tuple[_CorkedTransport, socket.socket, _Cork]:
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    cork = _Cork(loop)
    return _CorkedTransport(transport, cork), peer, cork  # type: ignore[arg-type]


def _received(peer: socket.socket) -> bytes:
    try:
        return peer.recv(65536)
    except BlockingIOError:
        return b""


async def test_the_writes_of_one_turn_leave_together_after_it_in_order() -> None:
    corked, peer, _ = await _pair()
    with peer:
        corked.write(b"one,")
        corked.write(b"two,")
        corked.writelines([b"three,", b""])
        assert corked.get_write_buffer_size() == len(b"one,two,three,")
        assert _received(peer) == b""  # nothing sent during the turn that wrote
        await asyncio.sleep(0)  # the turn ends: what it wrote is sent, as one
        assert _received(peer) == b"one,two,three,"
        corked.write(b"four")  # a later turn is held and sent again
        await asyncio.sleep(0.01)
        assert _received(peer) == b"four"
        corked.close()


async def test_closing_sends_what_is_held_before_the_end_of_the_stream() -> None:
    corked, peer, _ = await _pair()
    with peer:
        corked.write(b"last frame")
        corked.close()  # in the same turn: a close frame must not overtake a data frame
        await asyncio.sleep(0.01)
        assert _received(peer) == b"last frame"
        assert _received(peer) == b""  # then end of stream
        assert corked.is_closing()  # the rest is the transport's own


async def test_what_is_held_for_a_peer_gone_meanwhile_is_dropped() -> None:
    corked, peer, cork = await _pair()
    peer.close()
    corked.write(b"for nobody")
    corked.abort()
    await asyncio.sleep(0.01)  # the turn's end finds nothing held and a closed transport
    assert corked.get_write_buffer_size() == 0
    corked.write(b"after the end")
    cork._release()  # flushing a closing transport sends nothing and raises nothing
    assert corked.is_closing()
