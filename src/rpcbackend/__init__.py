"""rpcbackend: Celery's RPC result protocol over any kombu broker, without its known bugs.

Results travel back to the client that sent a task on the client's own reply queue (named by
the request's ``reply_to``, matched by ``correlation_id``), wire-compatible with Celery 5's
``rpc://`` backend. Use :class:`RPCBackend` standalone with a :class:`Config`, or as a Celery
app's ``result_backend = "rpcbackend:RPCBackend"``.
"""

from rpcbackend._backend import E_NO_CHORD_SUPPORT, RPCBackend
from rpcbackend._config import Config
from rpcbackend._consumer import ResultConsumer
from rpcbackend._errors import (
    BacklogLimitExceeded,
    ChordsNotSupported,
    ResultEvicted,
    ResultTimeout,
)
from rpcbackend._states import FINAL_PRECEDENCE, READY_STATES, Meta

__all__ = [
    "E_NO_CHORD_SUPPORT",
    "FINAL_PRECEDENCE",
    "READY_STATES",
    "BacklogLimitExceeded",
    "ChordsNotSupported",
    "Config",
    "Meta",
    "RPCBackend",
    "ResultConsumer",
    "ResultEvicted",
    "ResultTimeout",
]
