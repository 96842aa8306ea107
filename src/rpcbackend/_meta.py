# mypy: disable-error-code="no-untyped-call"
# (kombu ships annotations only for part of its API; its constructors and publish are untyped)
"""The meta document a result message carries, encoded and decoded as Celery 5 does.

Body of every result message (``celery.backends.base.Backend._get_result_meta``)::

    {"status": ..., "result": ..., "traceback": ..., "children": [...],
     "date_done": ISO-8601 or None, "task_id": ..., ["group_id": ...], ["parent_id": ...]}

plus ``name``, ``args``, ``kwargs``, ``worker``, ``retries``, ``queue`` with
``result_extended``. Exceptions travel as ``{"exc_type", "exc_message", "exc_module"}`` except
with the pickle serializer, which sends the exception object itself.
"""

from __future__ import annotations

import pickle
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from kombu.serialization import dumps

from rpcbackend._states import EXCEPTION_STATES, READY_STATES, Meta

#: Serializers that can carry an exception object as is (``celery.backends.base``).
EXCEPTION_ABLE_CODECS = frozenset({"pickle"})

_remote_classes: dict[tuple[str, str], type[Exception]] = {}
_remote_classes_lock = threading.Lock()


def request_field(request: Any, name: str) -> Any:
    """Read ``name`` from a Celery request context, a mapping, or any object; None if absent."""
    if request is None:
        return None
    if isinstance(request, Mapping):
        return request.get(name)
    return getattr(request, name, None)


def encode_value(result: Any, serializer: str) -> Any:
    # A Celery ResultBase returned by a task travels as its tuple form unless pickled
    # (``Backend.prepare_value``); duck-typed so Celery need not be imported.
    as_tuple = getattr(result, "as_tuple", None)
    if serializer != "pickle" and callable(as_tuple) and hasattr(result, "id"):
        return as_tuple()
    return result


def encode_exception(exc: BaseException, serializer: str) -> Any:
    """Serialise an exception as ``Backend.prepare_exception`` does."""
    if serializer in EXCEPTION_ABLE_CODECS:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            pass  # not picklable: fall through to the portable dict form
        else:
            return exc
    exc_type = type(exc)
    return {
        "exc_type": getattr(exc_type, "__qualname__", exc_type.__name__),
        "exc_message": _serializable_args(exc.args, serializer),
        "exc_module": exc_type.__module__,
    }


def _serializable_args(args: tuple[Any, ...], serializer: str) -> tuple[Any, ...]:
    # Same fallback as ``celery.utils.serialization.ensure_serializable``: an argument the
    # serializer rejects is replaced by its repr so the failure itself still gets reported.
    safe: list[Any] = []
    for arg in args:
        try:
            dumps(arg, serializer=serializer)
        except Exception:
            safe.append(repr(arg))
        else:
            safe.append(arg)
    return tuple(safe)


def decode_exception(value: Any) -> BaseException | None:
    """Rebuild an exception as ``Backend.exception_to_python`` does, without importing code.

    Only modules already imported are searched, and a name that does not resolve to an
    exception class yields a stand-in class: a result message must never be able to make the
    client call arbitrary code (the reason Celery's version has the same check).
    """
    if not value:
        return None
    if isinstance(value, BaseException):
        restore = getattr(value, "restore", None)
        # celery.utils.serialization.UnpickleableExceptionWrapper carries an exception that
        # could not be pickled; unwrap it as Celery's get_pickled_exception does.
        if type(value).__name__ == "UnpickleableExceptionWrapper" and callable(restore):
            restored = restore()
            if isinstance(restored, BaseException):
                return restored
        return value
    if not isinstance(value, Mapping):
        return Exception(repr(value))
    exc_type = str(value.get("exc_type", "Exception"))
    exc_module = value.get("exc_module")
    message = value.get("exc_message", "")
    cls = _resolve_exception_class(exc_type, exc_module if isinstance(exc_module, str) else None)
    try:
        if isinstance(message, list | tuple):
            return cls(*message)
        return cls(message)
    except Exception:
        return Exception(f"{cls.__module__}.{cls.__qualname__}({message!r})")


def _resolve_exception_class(exc_type: str, exc_module: str | None) -> type[BaseException]:
    if exc_module is not None:
        found: Any = sys.modules.get(exc_module)
        for part in exc_type.split("."):
            found = getattr(found, part, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            return found
    return _remote_class(exc_type, exc_module or "rpcbackend.remote")


def _remote_class(exc_type: str, exc_module: str) -> type[Exception]:
    # One stand-in class per remote name, so two failures of the same remote type compare
    # equal by type and ``except`` on the class from the first one catches the second.
    key = (exc_module, exc_type)
    with _remote_classes_lock:
        cls = _remote_classes.get(key)
        if cls is None:
            name = exc_type.rsplit(".", 1)[-1]
            cls = type(name, (Exception,), {"__module__": exc_module, "__qualname__": exc_type})
            _remote_classes[key] = cls
        return cls


def build_meta(
    task_id: str,
    state: str,
    result: Any,
    traceback: str | None,
    request: Any,
    *,
    serializer: str,
    now: Callable[[], datetime],
    extended: bool,
) -> Meta:
    """The message body for one state report (``RPCBackend._to_result`` in Celery)."""
    if state in EXCEPTION_STATES and isinstance(result, BaseException):
        encoded = encode_exception(result, serializer)
    else:
        encoded = encode_value(result, serializer)
    children = request_field(request, "children")
    meta: Meta = {
        "status": state,
        "result": encoded,
        "traceback": traceback,
        "children": (None if request is None else [child.as_tuple() for child in (children or [])]),
        "date_done": now().isoformat() if state in READY_STATES else None,
    }
    group_id = request_field(request, "group")
    if group_id:
        meta["group_id"] = group_id
    parent_id = request_field(request, "parent_id")
    if parent_id:
        meta["parent_id"] = parent_id
    if extended and request is not None:
        delivery_info = request_field(request, "delivery_info") or {}
        meta.update(
            name=request_field(request, "task"),
            args=request_field(request, "args"),
            kwargs=request_field(request, "kwargs"),
            worker=request_field(request, "hostname"),
            retries=request_field(request, "retries"),
            queue=delivery_info.get("routing_key") if isinstance(delivery_info, Mapping) else None,
        )
    meta["task_id"] = task_id
    return meta


def decode_meta(meta: Meta) -> Meta:
    """A copy of ``meta`` with the exception of a failed/retried/revoked task rebuilt.

    Idempotent, because Celery's ``AsyncResult`` passes metas through it a second time.
    """
    decoded = dict(meta)
    if decoded.get("status") in EXCEPTION_STATES:
        decoded["result"] = decode_exception(decoded.get("result"))
    return decoded
