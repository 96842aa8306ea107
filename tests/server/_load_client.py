"""The client side of test_load, run as its own process (as the apps a server serves are):
N connections, each publishing M messages to the next one's queue and consuming its own.

Usage: python _load_client.py HOST:PORT N M; prints one JSON line with what each received.
"""

import json
import sys
import threading

import amqp

host = sys.argv[1]
N = int(sys.argv[2])
M = int(sys.argv[3])
ready = threading.Barrier(N)
errors = []
counts = {}


def client(index):
    try:
        with amqp.Connection(host) as conn:
            ch = conn.channel()
            ch.queue_declare(f"load.{index}", auto_delete=False)
            ch.basic_qos(0, 500, False)
            got = []

            def on_message(msg):
                got.append(msg.body)
                if len(got) % 100 == 0:
                    ch.basic_ack(msg.delivery_tag, multiple=True)

            ch.basic_consume(f"load.{index}", callback=on_message)
            ready.wait(10)
            for n in range(M):
                ch.basic_publish(
                    amqp.Message(f"{index}:{n}".encode()), "", f"load.{(index + 1) % N}"
                )
            while len(got) < M:
                conn.drain_events(timeout=10)
            sender = (index - 1) % N
            counts[index] = got == [f"{sender}:{n}".encode() for n in range(M)]
    except BaseException as e:
        errors.append(repr(e))


ts = [threading.Thread(target=client, args=(i,)) for i in range(N)]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps({"errors": errors, "in_order": counts}))
