"""Idempotency receipts: a command's answer, saved in the same `save()` as its events.

The id is uuid5(tenant, Idempotency-Key), so a repeat of the key collides on the event store's
primary key and nothing of the repeated command is written (DESIGN.md 2).
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import AggregateCreated, BaseAggregate

from domain.base import LedgerEvent, Provenance

# Stored ids derive from this namespace: it never changes.
RECEIPT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fapiao-ledger:command-receipt:v1")


def receipt_id(tenant_id: str, idempotency_key: str) -> UUID:
    """A receipt's aggregate id: the same key of the same tenant always maps here."""
    return uuid5(RECEIPT_NAMESPACE, f"{tenant_id}|{idempotency_key}")


class CommandReceipt(BaseAggregate[UUID]):
    """The first answer to a command sent with an Idempotency-Key, and its request fingerprint."""

    TOPIC = "fapiao.command_receipt"

    class Event(LedgerEvent):
        pass

    class Recorded(Event, AggregateCreated):
        """A command carrying an Idempotency-Key was applied and answered with `response`."""

        TOPIC = "fapiao.command_receipt.recorded.v1"
        tenant_id: str
        idempotency_key: str
        fingerprint: str
        response: dict[str, Any]

        def apply(self, receipt: CommandReceipt) -> None:
            receipt.fingerprint = self.fingerprint
            receipt.response = self.response

    def __init__(self) -> None:
        self.fingerprint = ""
        self.response: dict[str, Any] = {}

    @classmethod
    def record(
        cls,
        tenant_id: str,
        idempotency_key: str,
        fingerprint: str,
        response: dict[str, Any],
        by: Provenance,
    ) -> CommandReceipt:
        return cls._create(
            cls.Recorded,
            id=receipt_id(tenant_id, idempotency_key),
            **by.fields(),
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            response=response,
        )
