"""The public surface: names, signature and class attributes of celery.backends.rpc."""

from __future__ import annotations

import inspect
import pickle

import pytest

import rpcbackend
from rpcbackend import ChordsNotSupported, Config, RPCBackend

SEED_NAMES = [
    "BacklogLimitExceeded", "Consumer", "Exchange", "Producer", "Queue", "ResultConsumer",
    "as_uri", "binding", "delete_group", "destination_for", "ensure_chords_allowed",
    "get_task_meta", "oid", "on_out_of_band_result", "on_reply_declare", "on_result_fulfilled",
    "on_task_call", "persistent", "poll", "reload_group_result", "reload_task_result",
    "restore_group", "retry_policy", "revive", "save_group", "store_result",
    "supports_autoexpire", "supports_native_join",
]


def test_exported_names_are_pinned() -> None:
    assert sorted(rpcbackend.__all__) == sorted([
        "E_NO_CHORD_SUPPORT", "FINAL_PRECEDENCE", "READY_STATES", "BacklogLimitExceeded",
        "ChordsNotSupported", "Config", "Meta", "RPCBackend", "ResultConsumer", "ResultEvicted",
        "ResultTimeout",
    ])
    for name in rpcbackend.__all__:
        assert hasattr(rpcbackend, name), name


@pytest.mark.parametrize("name", SEED_NAMES)
def test_every_seed_name_exists(name: str) -> None:
    assert hasattr(RPCBackend, name)


def test_constructor_signature_matches_celery() -> None:
    params = inspect.signature(RPCBackend.__init__).parameters
    positional = [p.name for p in params.values()
                  if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == ["self", "app", "connection", "exchange", "exchange_type",
                          "persistent", "serializer", "auto_delete"]
    assert params["auto_delete"].default is True
    assert all(params[n].default is None for n in positional[2:-1])


def test_class_attributes_match_seed() -> None:
    assert RPCBackend.retry_policy == {
        "max_retries": 20, "interval_start": 0, "interval_step": 1, "interval_max": 1,
    }
    assert RPCBackend.persistent is False
    assert RPCBackend.supports_autoexpire is True
    assert RPCBackend.supports_native_join is True
    assert RPCBackend.Consumer.auto_declare is False
    assert RPCBackend.Queue.can_cache_declaration is False
    assert RPCBackend.BacklogLimitExceeded is rpcbackend.BacklogLimitExceeded


def test_settings_come_from_config() -> None:
    backend = RPCBackend(Config(result_serializer="pickle", result_persistent=True,
                                result_expires=60, accept_content=["json", "pickle"]))
    assert backend.serializer == "pickle"
    assert backend.persistent is True and backend.delivery_mode == 2
    assert backend.expires == 60.0
    assert backend.accept == {"application/json", "application/x-python-serialize"}
    assert backend.as_uri() == "rpc://"
    default = RPCBackend(Config())
    assert default.persistent is False and default.delivery_mode == 1
    assert default.expires == 86400.0


def test_explicit_arguments_win_over_config() -> None:
    backend = RPCBackend(Config(result_persistent=True), persistent=False, serializer="pickle")
    assert backend.persistent is False and backend.serializer == "pickle"


def test_binding_is_celerys_reply_queue_declaration() -> None:
    backend = RPCBackend(Config())
    queue = backend.binding
    assert queue.name == backend.oid == queue.routing_key
    assert queue.exchange.name == ""
    assert queue.durable is True and queue.auto_delete is True
    assert queue.expires == 86400.0  # kombu sends it as x-expires in ms at declare time


def test_destination_for_reads_reply_to_and_correlation_id() -> None:
    backend = RPCBackend(Config())
    assert backend.destination_for("t1", {"reply_to": "q", "correlation_id": "c"}) == ("q", "c")
    assert backend.destination_for("t1", {"reply_to": "q"}) == ("q", "t1")
    with pytest.raises(RuntimeError, match="missing task request"):
        backend.destination_for("t1", None)


def test_store_result_without_reply_to_sends_nothing() -> None:
    # No connection is opened: the Config points at a port nothing listens on.
    backend = RPCBackend(Config(broker_url="amqp://guest:guest@127.0.0.1:1//"))
    assert backend.store_result("t1", 1, "SUCCESS", request={"reply_to": None}) is None


def test_hooks_that_do_nothing_by_design() -> None:
    backend = RPCBackend(Config())
    assert backend.on_reply_declare("t1") is None
    assert backend.on_result_fulfilled(object()) is None
    assert backend.revive(None) is None


def test_chords_are_rejected_with_a_clear_message() -> None:
    backend = RPCBackend(Config())
    with pytest.raises(ChordsNotSupported, match="does not support chords"):
        backend.ensure_chords_allowed()
    with pytest.raises(NotImplementedError):  # what Celery's canvas code expects
        backend.apply_chord((), None)
    with pytest.raises(ChordsNotSupported):
        backend.add_to_chord("g", None)


def test_groups_are_saved_restored_and_deleted_in_process() -> None:
    backend = RPCBackend(Config())
    assert backend.restore_group("g1") is None
    group = object()
    assert backend.save_group("g1", group) is group
    assert backend.restore_group("g1") is group
    assert backend.reload_group_result("g1") is group
    backend.delete_group("g1")
    assert backend.restore_group("g1") is None


def test_pickles_with_its_settings() -> None:
    backend = RPCBackend(Config(), serializer="pickle", persistent=True)
    clone = pickle.loads(pickle.dumps(backend))
    assert isinstance(clone, RPCBackend)
    assert (clone.serializer, clone.persistent) == ("pickle", True)
    assert clone.oid != backend.oid  # a new process-side client, with its own queue


def test_unknown_config_setting_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Config(result_serialiser="json")  # type: ignore[call-arg]
