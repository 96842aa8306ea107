"""``simamqp serve``: the broker engine over real AMQP 0-9-1 sockets.

Any AMQP client (py-amqp, kombu, pika, aio-pika, Celery workers in other processes, clients in
other languages) connects to ``Server(broker).start().url``; the ``Broker`` object (faults,
clock, trace, ``queue()``) stays in the process that started the server.
"""

from ._server import Server, serve

__all__ = ["Server", "serve"]
