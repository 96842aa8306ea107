"""Many connections, many messages through one server: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import simamqp
from simamqp.server import Server

CONNECTIONS = 8
MESSAGES = 10_000


def test_8_connections_x_10k_messages():
    """The clients run in their own process, as the applications a server serves do."""
    broker = simamqp.Broker(clock=simamqp.WallClock(), trace=False)
    with Server(broker) as server:
        host = server.url.split("@")[1].split("/")[0]
        client = Path(__file__).with_name("_load_client.py")
        result = subprocess.run(
            [sys.executable, str(client), host, str(CONNECTIONS), str(MESSAGES)],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["errors"] == []
        # every consumer got exactly its sender's messages, in publish order
        assert report["in_order"] == {str(i): True for i in range(CONNECTIONS)}
        server.settle()
        for index in range(CONNECTIONS):
            info = broker.queue(f"load.{index}")
            assert (info.messages_ready, info.messages_unacknowledged) == (0, 0)
