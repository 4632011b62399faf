"""What the Merkle log commits to for each stored event (its leaf bytes), documented exactly:

    RFC 8785 (JCS) JSON of {"position": <log position>, "recorded_at": "<UTC,
    YYYY-MM-DDTHH:MM:SS.ffffffZ>", "state_sha256": "<hex SHA-256 of the stored state bytes>",
    "stream_id": "<aggregate uuid>", "stream_version": <version>, "topic": "<stored topic>"}

The leaf hash is SHA-256(0x00 || leaf bytes) (RFC 9162). Committing to the state's hash, not
the state, lets personal data be erased later without breaking any proof.
"""

from __future__ import annotations

import hashlib
from datetime import UTC

import rfc8785

from application.ports import StoredEventRow
from domain.evidence import merkle


def leaf_bytes(row: StoredEventRow) -> bytes:
    return rfc8785.dumps(
        {
            "position": row.position,
            "stream_id": str(row.originator_id),
            "stream_version": row.originator_version,
            "topic": row.topic,
            "recorded_at": row.recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "state_sha256": hashlib.sha256(row.state).hexdigest(),
        }
    )


def leaf_hash(row: StoredEventRow) -> bytes:
    return merkle.leaf_hash(leaf_bytes(row))
