"""Connection handshake: protocol header, SASL mechanisms, limits, vhosts; both brokers."""

from __future__ import annotations

import socket

import amqp
import pytest
from _raw import PROTOCOL_HEADER, address, expect, frames, method, read_until_closed
from amqp.serialization import loads


def _host(url: str) -> str:
    return url.split("@")[1].split("/")[0]


@pytest.mark.parametrize("header", [b"AMQP\x00\x00\x09\x02", b"HTTP/1.1", b"AMQP\x00\x00\x08\x00"])
def test_unsupported_protocol_header_gets_ours_back(amqp_url, header):
    sock = socket.create_connection(address(amqp_url), timeout=5)
    sock.sendall(header)
    data, state = read_until_closed(sock, 2)
    sock.close()
    assert (data, state) == (PROTOCOL_HEADER, "closed")


def test_start_and_tune(amqp_url):
    sock = socket.create_connection(address(amqp_url), timeout=5)
    sock.sendall(PROTOCOL_HEADER)
    start = expect(sock, (10, 10))
    major, minor, properties, mechanisms, locales = loads("ooFSS", start, 4)[0]
    assert (major, minor, mechanisms, locales) == (0, 9, "PLAIN AMQPLAIN", "en_US")
    assert properties["product"] == "RabbitMQ"
    assert properties["capabilities"] == {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "consumer_priorities": True,
        "authentication_failure_close": True,
        "per_consumer_qos": True,
        "direct_reply_to": True,
    }
    sock.sendall(method(0, (10, 11), "FsSs", ({}, "PLAIN", b"\x00guest\x00guest", "en_US")))
    assert loads("BlB", expect(sock, (10, 30)), 4)[0] == [2047, 131072, 60]
    sock.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "AMQPLAIN"])
def test_login_mechanisms(amqp_url, mechanism):
    with amqp.Connection(_host(amqp_url), login_method=mechanism) as conn:
        assert conn.channel().queue_declare("", exclusive=True).queue.startswith("amq.gen-")


def test_wrong_password_is_403_after_the_login_delay(amqp_url):
    with pytest.raises(amqp.exceptions.AccessRefused) as info:
        amqp.Connection(_host(amqp_url), password="wrong", connect_timeout=10).connect()
    assert info.value.reply_text == (
        "ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN. "
        "For details see the broker logfile."
    )


def test_unknown_vhost_is_530(amqp_url):
    with pytest.raises(amqp.exceptions.NotAllowed) as info:
        amqp.Connection(_host(amqp_url), virtual_host="/no-such-vhost").connect()
    assert info.value.reply_text == "NOT_ALLOWED - vhost /no-such-vhost not found"


def test_connection_close_handshake(amqp_url):
    sock = socket.create_connection(address(amqp_url), timeout=5)
    sock.sendall(PROTOCOL_HEADER)
    expect(sock, (10, 10))
    sock.sendall(method(0, (10, 11), "FsSs", ({}, "PLAIN", b"\x00guest\x00guest", "en_US")))
    expect(sock, (10, 30))
    sock.sendall(method(0, (10, 31), "BlB", (2047, 131072, 0)))
    sock.sendall(method(0, (10, 40), "ssb", ("/", "", False)))
    expect(sock, (10, 41))
    sock.sendall(method(0, (10, 50), "BsBB", (200, "bye", 0, 0)))
    data, _ = read_until_closed(sock, 0.5)
    sock.close()
    assert frames(data) == [(1, 0, (10, 51))]
