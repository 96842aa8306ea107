"""Task states and the rule that decides which of two reports for one task wins.

The state names are Celery's (``celery.states``) so metas written by Celery read the same here.
"""

from __future__ import annotations

from typing import Any, Final

Meta = dict[str, Any]

PENDING: Final = "PENDING"
RECEIVED: Final = "RECEIVED"
STARTED: Final = "STARTED"
SUCCESS: Final = "SUCCESS"
FAILURE: Final = "FAILURE"
REVOKED: Final = "REVOKED"
REJECTED: Final = "REJECTED"
RETRY: Final = "RETRY"

#: A task in one of these states will not report again (``celery.states.READY_STATES``).
READY_STATES: Final = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES: Final = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
#: The ``result`` field of these states holds a serialised exception.
EXCEPTION_STATES: Final = frozenset({RETRY, FAILURE, REVOKED})
#: ``AsyncResult.get(propagate=True)`` raises for these.
PROPAGATE_STATES: Final = frozenset({FAILURE, REVOKED})

#: When one task id receives two *different* final states (a duplicated task, a revoke racing
#: the worker, a bug), the earlier name in this tuple wins whatever the arrival order, so the
#: outcome does not depend on delivery order. It is Celery's own ``states.PRECEDENCE`` order.
FINAL_PRECEDENCE: Final = (SUCCESS, FAILURE, REVOKED)


def is_ready(state: str) -> bool:
    return state in READY_STATES


def supersedes(incoming: Meta, current: Meta | None) -> bool:
    """Return whether ``incoming`` should replace ``current`` as a task's known meta.

    One rule per line, first match wins:

    ========================  ===============  ==============================================
    current                   incoming         outcome
    ========================  ===============  ==============================================
    none                      any              take it
    final                     not final        keep current: a late or reordered progress
                                               report never moves a task backwards
    final S                   final S          keep current: a duplicate (redelivery)
    final S                   final T != S     the one first in ``FINAL_PRECEDENCE``
    not final                 final            take it
    not final                 not final        take it: progress states legitimately repeat
                                               (STARTED -> RETRY -> STARTED), so the latest
                                               arrival is the best information there is
    ========================  ===============  ==============================================
    """
    if current is None:
        return True
    current_state = current["status"]
    incoming_state = incoming["status"]
    if is_ready(current_state):
        if not is_ready(incoming_state) or incoming_state == current_state:
            return False
        return _final_rank(incoming_state) < _final_rank(current_state)
    return True


def _final_rank(state: str) -> int:
    return FINAL_PRECEDENCE.index(state)
