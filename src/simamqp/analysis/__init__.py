"""Analysis over the trace: message histories, guarantee checkers and sequence diagrams.

Pure functions over trace events (``simamqp.core`` only): they never change what a broker
does, and answer the same on a live broker, a recorded trace and a replayed scenario file.
See docs/histories.md.
"""

from .checkers import (
    GUARANTEES,
    Finding,
    Guarantee,
    RPCLedger,
    Verdict,
    check_delivery,
    check_durability,
    check_fifo,
    check_processing,
    check_rpc,
    text_key,
)
from .histories import (
    Delivery,
    FaultHit,
    Histories,
    MessageHistory,
    build_histories,
    events_from_lines,
    events_of,
)
from .svg import sequence_diagram

__all__ = [
    "GUARANTEES",
    "Delivery",
    "FaultHit",
    "Finding",
    "Guarantee",
    "Histories",
    "MessageHistory",
    "RPCLedger",
    "Verdict",
    "build_histories",
    "check_delivery",
    "check_durability",
    "check_fifo",
    "check_processing",
    "check_rpc",
    "events_from_lines",
    "events_of",
    "sequence_diagram",
    "text_key",
]
