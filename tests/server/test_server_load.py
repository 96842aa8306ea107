"""Many connections, many messages through one server: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import amqp

CONNECTIONS = 8
MESSAGES = 10_000


def test_8_connections_x_10k_messages():
    """Server and clients each run in their own process, as in a deployment.

    (In the test process the server would share its garbage collector with a whole test
    session's heap; a pause over 1 s leaves sockets unread for longer than py-amqp's
    TCP_USER_TIMEOUT, and the clients would drop the connection: a property of the setup,
    not of the server, documented in docs/server.md.)
    """
    server = subprocess.Popen(
        [sys.executable, "-m", "simamqp.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        host = server.stdout.readline().strip().split("@")[1].split("/")[0]
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
        with amqp.Connection(host) as conn:
            ch = conn.channel()
            for index in range(CONNECTIONS):
                declared = ch.queue_declare(f"load.{index}", passive=True)
                assert (declared.message_count, declared.consumer_count) == (0, 0)
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0
