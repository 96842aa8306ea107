"""Wire compatibility with Celery 5's rpc:// backend: queue declaration, properties, body."""

from __future__ import annotations

import amqp
import kombu
import pytest
from _rpc_helpers import BrokerUnderTest, celery_app, new_id, request_for

pytestmark = pytest.mark.celery


def _celery_binding(name: str, expires: float) -> kombu.Queue:
    # Copied from celery.backends.rpc.RPCBackend.binding (Celery 5.7).
    return kombu.Queue(name, kombu.Exchange(None), name, durable=True, auto_delete=True,
                       expires=expires)


def test_reply_queue_is_declared_exactly_as_celery_declares_it(broker: BrokerUnderTest) -> None:
    client = broker.backend()
    conn = broker.connection()
    client.on_task_call(kombu.Producer(conn), new_id())
    # Redeclaring with Celery's arguments succeeds only if every argument is equal ...
    _celery_binding(client.oid, 86400.0)(conn.channel()).declare()
    # ... as this control shows: one different argument is a 406 PRECONDITION_FAILED.
    with pytest.raises(amqp.exceptions.PreconditionFailed):
        _celery_binding(client.oid, 60.0)(conn.channel()).declare()
    broker.delete_queue(client.oid)


def _read_raw(conn: kombu.Connection, queue_name: str) -> kombu.Message:
    message = kombu.Queue(queue_name, no_declare=True)(conn.channel()).get(no_ack=True)
    assert message is not None, f"no message in {queue_name}"
    return message


@pytest.mark.parametrize("persistent", [False, True])
def test_result_message_is_the_one_celery_sends(broker: BrokerUnderTest, persistent: bool) -> None:
    from celery.app.task import Context

    app = celery_app(broker, "rpc://", result_persistent=persistent)
    conn = broker.connection()
    ours = broker.backend(result_persistent=persistent)
    task_id = new_id()
    ours_queue, celery_queue = f"ours-{task_id}", f"celery-{task_id}"
    for name in (ours_queue, celery_queue):
        _celery_binding(name, 60.0)(conn.default_channel).declare()
    request = {"group": "g-1", "parent_id": "p-1", "children": []}
    ours.store_result(task_id, {"answer": 42}, "SUCCESS",
                      request={**request, "reply_to": ours_queue, "correlation_id": task_id})
    app.backend.store_result(task_id, {"answer": 42}, "SUCCESS",
                             request=Context(request, reply_to=celery_queue,
                                             correlation_id=task_id))
    mine, theirs = _read_raw(conn, ours_queue), _read_raw(conn, celery_queue)
    for prop in ("correlation_id", "delivery_mode"):
        assert mine.properties[prop] == theirs.properties[prop], prop
    assert (mine.content_type, mine.content_encoding) == (theirs.content_type,
                                                          theirs.content_encoding)
    assert mine.delivery_info["exchange"] == theirs.delivery_info["exchange"] == ""
    body, expected = mine.decode(), theirs.decode()
    if "date_done" in expected:  # Celery >= 5.7 sends its full result meta, as we do
        assert list(body) == list(expected)  # same keys, same order
        body.pop("date_done"), expected.pop("date_done")
        assert body == expected
    else:
        # Celery < 5.7 sends five of those keys (task_id, status, result, traceback, children):
        # ours carries the same values under them, and every Celery 5 client reads the rest
        # (tests/rpcbackend/test_celery_interop.py runs such clients).
        assert list(expected) == ["task_id", "status", "result", "traceback", "children"]
        assert {key: body[key] for key in expected} == expected
    assert mine.properties["delivery_mode"] == (2 if persistent else 1)
    for name in (ours_queue, celery_queue):
        broker.delete_queue(name)


def test_failure_is_encoded_as_celery_encodes_it(broker: BrokerUnderTest) -> None:
    app = celery_app(broker, "rpc://")
    conn = broker.connection()
    ours = broker.backend()
    queue = f"failure-{new_id()}"
    _celery_binding(queue, 60.0)(conn.default_channel).declare()
    error = KeyError("missing", 3)
    ours.store_result("t1", error, "FAILURE", traceback="tb",
                      request={"reply_to": queue, "correlation_id": "t1"})
    encoded = _read_raw(conn, queue).decode()["result"]
    # Celery's prepare_exception gives a tuple; on the wire (JSON) it is a list either way.
    celery_encoded = app.backend.prepare_exception(error)
    assert encoded == {**celery_encoded, "exc_message": list(celery_encoded["exc_message"])}
    assert encoded == {"exc_type": "KeyError", "exc_message": ["missing", 3],
                       "exc_module": "builtins"}
    broker.delete_queue(queue)


def test_client_decodes_what_celery_encodes(broker: BrokerUnderTest) -> None:
    from celery.app.task import Context

    app = celery_app(broker, "rpc://")
    client = broker.backend()
    conn = broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    app.backend.store_result(task_id, ValueError("bad"), "FAILURE", traceback="tb",
                             request=Context(request_for(client, task_id)))
    meta = client.wait_for(task_id, timeout=5)
    assert meta["status"] == "FAILURE" and meta["traceback"] == "tb"
    assert isinstance(meta["result"], ValueError) and meta["result"].args == ("bad",)


def test_unknown_remote_exception_type_becomes_a_stand_in(broker: BrokerUnderTest) -> None:
    client = broker.backend()
    conn = broker.connection()
    task_id = new_id()
    client.on_task_call(kombu.Producer(conn), task_id)
    # A hostile or foreign meta naming a non-exception callable must not be called.
    for module, name in [("os", "system"), ("nowhere.module", "CustomError")]:
        kombu.Producer(conn).publish(
            {"status": "FAILURE", "result": {"exc_type": name, "exc_module": module,
                                             "exc_message": ["echo hi"]},
             "traceback": None, "children": [], "date_done": None, "task_id": task_id},
            exchange="", routing_key=client.oid, correlation_id=task_id, serializer="json",
        )
        meta = client.wait_for(task_id, timeout=5)
        assert isinstance(meta["result"], Exception)
        assert type(meta["result"]).__name__ == name
        assert meta["result"].args == ("echo hi",)
        client.forget(task_id)
