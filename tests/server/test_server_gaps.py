"""Close handshakes and nowait methods, byte for byte on the server and on RabbitMQ.

Each test here kills a hand-written bug that survived the suite before issue 22 (listed in
docs/mutation.md): a close-ok never sent when the client's connection.close crosses the
server's, the close-ok timeout removed, a reply sent to a ``nowait`` method.
"""

from __future__ import annotations

import socket
from typing import Any

from _raw import expect, frame, frames, method, open_connection, read_frame, send

DECLARE = "BsbbbbbF"


def _read_to_end(sock: socket.socket, timeout: float = 30.0) -> tuple[bytes, str]:
    """Everything the broker sends until it closes the socket ("eof"/"reset")."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, "eof"
            data += chunk
    except ConnectionResetError:
        return data, "reset"


def _channel(url: str) -> socket.socket:
    sock = open_connection(url)
    sock.sendall(method(1, (20, 10), "s", ("",)))
    expect(sock, (20, 11))
    return sock


def test_client_close_crossing_the_servers_close_gets_close_ok(amqp_url):
    """The server closes (a frame error) while the client's connection.close is on its way:
    both sides answer the other's close with close-ok (AMQP 0-9-1 section 2.2.4)."""
    sock = _channel(amqp_url)
    send(sock, frame(8, 0, b"abc") + method(0, (10, 50), "BsBB", (200, "bye", 0, 0)))
    data, _ = _read_to_end(sock)
    sock.close()
    got = frames(data)
    assert [f[0] if f[0] == "close" else f for f in got] == ["close", (1, 0, (10, 51))]


def test_a_close_never_answered_is_dropped_after_the_close_ok_timeout():
    """RabbitMQ's reader waits (bounded) for close-ok after its connection.close, then
    closes the socket; the server does too (Server(close_ok_timeout=...))."""
    import simamqp
    from simamqp.server import Server

    broker = simamqp.Broker(clock=simamqp.WallClock())
    with Server(broker, close_ok_timeout=0.5) as server:
        sock = _channel(server.url)
        send(sock, frame(8, 0, b"abc"))
        data, state = _read_to_end(sock)
        sock.close()
    assert [f[0] for f in frames(data)] == ["close"]
    assert state in ("eof", "reset")


#: (method sig, argument format, arguments with nowait=True); each sent on channel 1 after a
#: queue "q.<token>" and an exchange "x.<token>" were declared.
def _nowait_methods(token: str) -> dict[str, tuple[tuple[int, int], str, tuple[Any, ...]]]:
    q, x = f"gaps.q.{token}", f"gaps.x.{token}"
    return {
        "exchange.declare": (
            (40, 10),
            "BssbbbbbF",
            (0, x + "2", "direct", False, False, True, False, True, {}),
        ),
        "exchange.bind": ((40, 30), "BsssbF", (0, x + "2", x, "rk", True, {})),
        "exchange.unbind": ((40, 40), "BsssbF", (0, x + "2", x, "rk", True, {})),
        "exchange.delete": ((40, 20), "Bsbb", (0, x + "2", False, True)),
        "queue.declare": ((50, 10), DECLARE, (0, q + "2", False, False, False, True, True, {})),
        "queue.bind": ((50, 20), "BsssbF", (0, q, x, "rk", True, {})),
        "queue.purge": ((50, 30), "Bsb", (0, q, True)),
        "basic.consume": ((60, 20), "BssbbbbF", (0, q, "ctag", False, False, False, True, {})),
        "basic.cancel": ((60, 30), "sb", ("ctag", True)),
        "queue.delete": ((50, 40), "Bsbbb", (0, q + "2", False, False, True)),
        "confirm.select": ((85, 10), "b", (True,)),
    }


def test_nowait_methods_get_no_reply(amqp_url):
    """A method sent with nowait=true is answered with nothing, by either broker: after all of
    them, a synchronous basic.qos is answered by its qos-ok and only that."""
    import uuid

    token = uuid.uuid4().hex
    sock = _channel(amqp_url)
    q, x = f"gaps.q.{token}", f"gaps.x.{token}"
    sock.sendall(method(1, (50, 10), DECLARE, (0, q, False, False, False, True, False, {})))
    expect(sock, (50, 11))
    sock.sendall(
        method(1, (40, 10), "BssbbbbbF", (0, x, "direct", False, False, False, False, False, {}))
    )
    expect(sock, (40, 11))
    for name, (sig, fmt, args) in _nowait_methods(token).items():
        sock.sendall(method(1, sig, fmt, args))
        sock.sendall(method(1, (60, 10), "lBb", (0, 0, False)))  # basic.qos: the fence
        reply = frames(read_frame(sock))
        assert reply == [(1, 1, (60, 11))], name  # a stray reply (or an error) came first
    sock.sendall(method(1, (40, 20), "Bsbb", (0, x, False, False)))
    expect(sock, (40, 21))
    sock.close()


def test_channel_ids_above_2047_open_while_fewer_than_channel_max_are_open(amqp_url):
    """channel_max is a count: ids 2048 and 65535 open on both brokers (docs/differences.md
    said the server refused them; it does not)."""
    sock = open_connection(amqp_url)
    for channel in (2048, 65535):
        sock.sendall(method(channel, (20, 10), "s", ("",)))
        assert frames(read_frame(sock)) == [(1, channel, (20, 11))]
    sock.close()
