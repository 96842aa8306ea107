"""Transactions (the AMQP 0-9-1 ``tx`` class) with RabbitMQ 3.10's semantics.

What rabbit_channel does, measured against RabbitMQ 3.10.8 (tests/conformance/test_tx.py):

- ``tx.select`` makes the channel transactional for the rest of its life; on a channel in
  confirm mode it is ``406 cannot switch from confirm to tx mode`` (and ``confirm.select`` on a
  transactional channel ``406 cannot switch from tx to confirm mode``).
- A publish is checked when it arrives (a missing exchange, an invalid expiration close the
  channel then, method ``basic.publish``) but reaches its queues at ``tx.commit``, in order,
  with its ``basic.return`` if unroutable and mandatory.
- An ack, nack or reject is checked when it arrives (an unknown delivery tag is 406 then) and
  takes the deliveries out of the channel's unacknowledged set; it settles them at commit. The
  consumer's prefetch credit comes back only then.
- ``tx.rollback`` discards the publishes and puts the deliveries taken by acks, nacks and
  rejects back among the unacknowledged, not requeued; a channel closed with a transaction
  open discards it the same way (its unacknowledged deliveries are then requeued).
- ``tx.commit``/``tx.rollback`` on a channel that never selected are
  ``406 channel is not transactional``.

Routing happens at commit, where RabbitMQ routes when the publish arrives: a binding changed
between a publish and its commit routes differently (docs/differences.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import PreconditionFailed

if TYPE_CHECKING:
    from .channel import Channel, _Unacked
    from .exchanges import Exchange
    from .message import Message

__all__ = ["Transaction", "commit", "rollback", "select"]


class Transaction:
    """What a transactional channel has done since its last commit or rollback."""

    __slots__ = ("publishes", "settles")

    def __init__(self) -> None:
        #: (exchange, message, mandatory), checked and traced, not yet routed.
        self.publishes: list[tuple[Exchange, Message, bool]] = []
        #: (kind, {delivery tag: delivery}, requeue): taken out of the unacked set.
        self.settles: list[tuple[str, dict[int, _Unacked], bool]] = []

    def defer_publish(self, exchange: Exchange, message: Message, mandatory: bool) -> None:
        self.publishes.append((exchange, message, mandatory))

    def defer_settle(
        self, channel: Channel, kind: str, delivery_tag: int, multiple: bool, requeue: bool
    ) -> None:
        """Take the deliveries an ack/nack/reject names (406 for an unknown tag, now)."""
        unacked = channel.unacked
        before = dict(unacked)
        channel.collect_unacked(delivery_tag, multiple)
        taken = {tag: item for tag, item in before.items() if tag not in unacked}
        self.settles.append((kind, taken, requeue))

    def restore(self, channel: Channel) -> None:
        """Rollback: deliveries taken by settles are unacknowledged again, in tag order."""
        if not self.settles:
            self.publishes.clear()
            return
        merged = dict(channel.unacked)
        for _kind, taken, _requeue in self.settles:
            merged.update(taken)
        channel.unacked.clear()
        channel.unacked.update(sorted(merged.items()))
        self.publishes.clear()
        self.settles.clear()


def select(channel: Channel) -> None:
    """tx.select (``Channel.tx_select`` runs it as a synchronous method)."""
    if channel.confirm:
        raise PreconditionFailed("cannot switch from confirm to tx mode")
    if channel.tx is None:
        channel.tx = Transaction()
    _emit(channel, "tx-select")


def _require(channel: Channel) -> Transaction:
    tx = channel.tx
    if tx is None:
        raise PreconditionFailed("channel is not transactional")
    return tx


def commit(channel: Channel) -> None:
    """tx.commit: route the transaction's publishes, then settle its acks, nacks and rejects
    (``Channel.tx_commit`` runs it as a synchronous method)."""
    tx = _require(channel)
    publishes, settles = tx.publishes, tx.settles
    channel.tx = Transaction()
    _emit(channel, "tx-commit", publishes=len(publishes), settles=len(settles))
    broker = channel.broker
    for exchange, message, mandatory in publishes:
        broker.route_and_enqueue(channel, exchange, message, mandatory, None)
    for kind, taken, requeue in settles:
        items = [taken[tag] for tag in sorted(taken)]
        if kind == "ack":
            channel.ack_settled(items)
        else:
            channel.settle_negative(items, requeue, kind)


def rollback(channel: Channel) -> None:
    """tx.rollback (``Channel.tx_rollback`` runs it as a synchronous method)."""
    tx = _require(channel)
    _emit(channel, "tx-rollback", publishes=len(tx.publishes), settles=len(tx.settles))
    tx.restore(channel)


def _emit(channel: Channel, kind: str, **attrs: Any) -> None:
    channel.broker.emit(kind, connection=channel.connection.id, channel=channel.id, **attrs)
