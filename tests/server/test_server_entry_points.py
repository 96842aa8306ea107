"""The ways in: the pytest fixture, the context manager, the CLI; and faults on real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import amqp
import kombu
import pika
import pika.exceptions
import pytest

import simamqp
from simamqp.server import serve


def test_fixture_serves_sim_broker_to_another_process(sim_broker, sim_amqp_server):
    """A subprocess publishes over amqp://; the test inspects the same broker object."""
    code = (
        "import sys, kombu\n"
        "with kombu.Connection(sys.argv[1]) as c:\n"
        "    c.SimpleQueue('from-child').put({'n': 1})\n"
    )
    subprocess.run([sys.executable, "-c", code, sim_amqp_server.url], check=True, timeout=60)
    sim_amqp_server.settle()
    assert sim_broker.queue("from-child").messages_ready == 1
    assert sim_broker.trace.of_kind("publish")


def test_restart_closes_real_sockets(sim_broker, sim_amqp_server):
    conn = pika.BlockingConnection(pika.URLParameters(sim_amqp_server.url))
    conn.channel().queue_declare("transient")
    sim_broker.restart()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.process_data_events(time_limit=2)
    assert info.value.reply_code == 320
    assert info.value.reply_text == (
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
    )
    sim_amqp_server.settle()
    assert sim_amqp_server.connection_count == 0  # the socket is gone, not just the channel


def test_fault_rule_close_connection_on_publish(sim_broker, sim_amqp_server):
    sim_broker.faults.add(point="publish", action="close_connection", nth=1)
    conn = amqp.Connection(sim_amqp_server.url.split("@")[1].split("/")[0])
    conn.connect()
    ch = conn.channel()
    ch.basic_publish(amqp.Message(b"x"), "", "q")
    with pytest.raises(amqp.exceptions.ConnectionForced):
        conn.drain_events(timeout=2)


def test_context_manager_yields_a_url_any_kombu_client_can_use():
    broker = simamqp.Broker(clock=simamqp.WallClock())
    with serve(broker) as url, kombu.Connection(url) as conn:
        queue = conn.SimpleQueue("hello")
        queue.put("hi")
        assert queue.get(timeout=5).payload == "hi"


def test_cli_serve_prints_url_and_exits_cleanly_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "simamqp.cli", "serve", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("amqp://guest:guest@127.0.0.1:")
        with kombu.Connection(url) as conn:
            conn.SimpleQueue("cli").put("over the CLI")
            assert conn.SimpleQueue("cli").get(timeout=5).payload == "over the CLI"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_serve_port_in_use_is_one_line():
    with serve(simamqp.Broker()) as url:
        port = url.rsplit(":", 1)[1].split("/")[0]
        result = subprocess.run(
            [sys.executable, "-m", "simamqp.cli", "serve", "--port", port],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert (
        result.stderr
        == f"simamqp serve: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


def test_missed_heartbeats_drop_the_client(amqp_url):
    """rabbit_heartbeat, heartbeat 1 s: a heartbeat every 0.5 s, and a client silent for two
    intervals after the first check is reset. Counted in heartbeats sent before the reset (5
    on RabbitMQ 3.10 and on the server, measured; 3 missed intervals would be 7, one 3), not
    in seconds, so a loaded machine does not change the answer."""
    import socket

    from _raw import PROTOCOL_HEADER, address, expect, method, read_until_closed

    sock = socket.create_connection(address(amqp_url), timeout=5)
    sock.sendall(PROTOCOL_HEADER)
    expect(sock, (10, 10))
    sock.sendall(method(0, (10, 11), "FsSs", ({}, "PLAIN", b"\x00guest\x00guest", "en_US")))
    expect(sock, (10, 30))
    sock.sendall(method(0, (10, 31), "BlB", (2047, 131072, 1)))
    sock.sendall(method(0, (10, 40), "ssb", ("/", "", False)))
    expect(sock, (10, 41))
    data, state = read_until_closed(sock, 60)
    sock.close()
    assert state == "closed"
    beats = data.count(b"\x08\x00\x00\x00\x00\x00\x00\xce")
    assert 4 <= beats <= 6
