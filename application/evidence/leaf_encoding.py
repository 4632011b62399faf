"""What the Merkle log commits to, documented exactly (the README repeats it for verifiers).

Event leaf, one per stored event in log order: the RFC 8785 (JCS) JSON of

    {"position": <log position>, "recorded_at": "<UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ>",
     "state_sha256": "<hex SHA-256 of the stored state bytes>", "stream_id": "<uuid>",
     "stream_version": <version>, "tenant": "<tenant code>" | null, "topic": "<stored topic>"}

Stream head leaf, one per stream in the second tree (ordered by where each stream first
appears in the log): the JCS JSON of

    {"last_position": <position of its last event>, "last_version": <its version>,
     "stream_id": "<uuid>"}

Leaf hash = SHA-256(0x00 || leaf bytes) (RFC 9162) for both. Committing to the state's hash,
not the state, lets personal data be erased later without breaking any proof.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from typing import Any
from uuid import UUID

from application.evidence import canonical_json
from application.ports import StoredEventRow
from domain.evidence import merkle


def leaf_document(row: StoredEventRow, tenant: str | None) -> dict[str, Any]:
    return {
        "position": row.position,
        "stream_id": str(row.originator_id),
        "stream_version": row.originator_version,
        "tenant": tenant,
        "topic": row.topic,
        "recorded_at": row.recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "state_sha256": hashlib.sha256(row.state).hexdigest(),
    }


def leaf_bytes(row: StoredEventRow, tenant: str | None) -> bytes:
    return canonical_json.dumps(leaf_document(row, tenant))


def leaf_hash(row: StoredEventRow, tenant: str | None) -> bytes:
    return merkle.leaf_hash(leaf_bytes(row, tenant))


def tenant_of_first_event(row: StoredEventRow) -> str | None:
    """Every aggregate's first event names its tenant (`tenant_id` in the stored state)."""
    try:
        tenant = json.loads(row.state).get("tenant_id")
    except (ValueError, AttributeError):
        return None
    return tenant if isinstance(tenant, str) else None


def head_document(stream_id: UUID | str, last_version: int, last_position: int) -> dict[str, Any]:
    return {
        "last_position": last_position,
        "last_version": last_version,
        "stream_id": str(stream_id),
    }


def head_bytes(stream_id: UUID | str, last_version: int, last_position: int) -> bytes:
    """JCS of the head document. Written out directly (the sealer hashes one per changed
    stream at every checkpoint); tests hold it equal to `rfc8785.dumps(head_document(...))`:
    sorted ASCII keys, integers, and a lowercase uuid that needs no escaping."""
    return (
        f'{{"last_position":{int(last_position)},"last_version":{int(last_version)},'
        f'"stream_id":"{UUID(str(stream_id))}"}}'
    ).encode()


def head_hash(stream_id: UUID | str, last_version: int, last_position: int) -> bytes:
    return merkle.leaf_hash(head_bytes(stream_id, last_version, last_position))
