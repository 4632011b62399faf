"""Read-model and admin tables as one SQLAlchemy Core metadata for both dialects.

The migrations create these (they never import this module); tests/integration compare the
migrated schema with this metadata so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
    false,
)
from sqlalchemy.types import TypeEngine


class Money(TypeDecorator[Decimal]):
    """NUMERIC(18,2) on PostgreSQL; integer cents on SQLite, which has no exact decimal type."""

    impl = Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(18, 2, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return int((Decimal(value) * 100).to_integral_exact())

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / 100).quantize(Decimal("0.01"))
        return Decimal(value).quantize(Decimal("0.01"))


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes stored in UTC on both dialects (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String, primary_key=True),
    Column("tenant_id", String, ForeignKey("tenants.tenant_id"), nullable=False),
    Column("secret_hash", String, nullable=False, unique=True),
    Column("roles", String, nullable=False),
    Column("label", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    # an ERP's shared key: it may name the person it acts for (X-Actor-User)
    Column("acts_for_users", Boolean, nullable=False, server_default=false()),
)

invoice_status = Table(
    "invoice_status",
    metadata,
    Column("invoice_id", Uuid, primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("invoice_key", String, nullable=False),
    Column("number", String, nullable=False),
    Column("code", String, nullable=True),
    Column("invoice_type", String, nullable=False),
    Column("direction", String, nullable=False),
    Column("issued_on", Date, nullable=False),
    Column("seller_code", String, nullable=False),
    Column("seller_name", String, nullable=False),
    Column("buyer_code", String, nullable=True),
    Column("buyer_name", String, nullable=False),
    Column("amount", Money, nullable=False),
    Column("tax", Money, nullable=False),
    Column("total", Money, nullable=False),
    Column("tax_rate", String, nullable=True),
    Column("status", String, nullable=False),
    Column("submission_attempts", Integer, nullable=False),
    Column("last_failure_reason", String, nullable=True),
    Column("platform_ref", String, nullable=True),
    Column("acknowledged_at", UTCDateTime, nullable=True),
    Column("acknowledged_late", Integer, nullable=False),
    Column("rejection_code", String, nullable=True),
    Column("rejection_message", Text, nullable=True),
    Column("missing_detected_by", String, nullable=True),
    Column("missing_since", UTCDateTime, nullable=True),
    Column("reversed_amount", Money, nullable=False),
    Column("red_invoice_keys", Text, nullable=False),
    Column("reverses_key", String, nullable=True),
    Column("replaces_key", String, nullable=True),
    Column("replaced_by", String, nullable=True),
    Column("version", Integer, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("last_event", String, nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("invoice_status_tenant_issued", "tenant_id", "issued_on", "invoice_id"),
    Index("invoice_status_tenant_status", "tenant_id", "status", "issued_on"),
    Index("invoice_status_tenant_key", "tenant_id", "invoice_key", unique=True),
)

status_daily = Table(
    "status_daily",
    metadata,
    Column("tenant_id", String, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("status", String, primary_key=True),
    Column("entered", Integer, nullable=False),
)

# One row /readyz updates to prove a write can commit.
readiness_probe = Table(
    "readiness_probe",
    metadata,
    Column("probe_id", Integer, primary_key=True, autoincrement=False),
    Column("checked_at", UTCDateTime, nullable=True),
)

# The facts status_daily is counted from: one row per (invoice, position) that entered a status.
# A batch applied twice writes the same rows again (nothing new), so the counts never double.
status_entries = Table(
    "status_entries",
    metadata,
    Column("invoice_id", Uuid, primary_key=True),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant_id", String, nullable=False),
    Column("day", Date, nullable=False),
    Column("status", String, nullable=False),
    Index("status_entries_cell", "tenant_id", "day", "status"),
)

projection_dead_letters = Table(
    "projection_dead_letters",
    metadata,
    Column("projection", String, primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("originator_id", String, nullable=False),
    Column("originator_version", BigInteger, nullable=False),
    Column("topic", String, nullable=False),
    Column("error", Text, nullable=False),
    Column("failed_at", UTCDateTime, nullable=False),
)


ack_timers = Table(
    "ack_timers",
    metadata,
    Column("invoice_id", Uuid, primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("window_seconds", Integer, nullable=True),
    Column("due_at", UTCDateTime, nullable=True),
    Index("ack_timers_due", "due_at"),
    Index("ack_timers_tenant_due", "tenant_id", "due_at"),
)

tenant_policies = Table(
    "tenant_policies",
    metadata,
    Column("tenant_id", String, primary_key=True),
    Column("policy_id", Uuid, nullable=False, unique=True),
    Column("ack_window_seconds", Integer, nullable=False),
)

maintenance_windows = Table(
    "maintenance_windows",
    metadata,
    Column("window_id", Uuid, primary_key=True),
    Column("tenant_id", String, nullable=False, index=True),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("note", Text, nullable=False),
)


reconciliation_rows = Table(
    "reconciliation_rows",
    metadata,
    Column("run_id", Uuid, primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("invoice_key", String, nullable=False),
    Column("issued_on", Date, nullable=False),
    Column("amount", Money, nullable=False),
    Column("tax", Money, nullable=False),
    Column("total", Money, nullable=False),
    Column("seller_code", String, nullable=True),
    Column("buyer_code", String, nullable=True),
    Column("platform_status", String, nullable=False),
    Column("raw", Text, nullable=False),
    Index("reconciliation_rows_key", "run_id", "invoice_key", "line"),
)

reconciliation_findings = Table(
    "reconciliation_findings",
    metadata,
    Column("run_id", Uuid, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("class", String, nullable=False),
    Column("line", Integer, nullable=True),
    Column("invoice_key", String, nullable=True),
    Column("invoice_id", Uuid, nullable=True),
    Column("differences", Text, nullable=False),
    Column("event", String, nullable=True),
    Column("position", BigInteger, nullable=True),
    Column("note", Text, nullable=False),
    Index("reconciliation_findings_class", "tenant_id", "class"),
)


callback_secrets = Table(
    "callback_secrets",
    metadata,
    Column("tenant_id", String, ForeignKey("tenants.tenant_id"), primary_key=True),
    Column("secret", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

callback_signatures = Table(
    "callback_signatures",
    metadata,
    Column("signature", String, primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("received_at", UTCDateTime, nullable=False, index=True),
)


webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("subscription_id", Uuid, primary_key=True),
    Column("tenant_id", String, ForeignKey("tenants.tenant_id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("secret", String, nullable=False),
    Column("events", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    # Set when made with an Idempotency-Key (the id then derives from tenant and key).
    Column("request_fingerprint", String, nullable=True),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", Uuid, primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("subscription_id", Uuid, nullable=False),
    Column("event_type", String, nullable=False),
    Column("payload", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("status", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Index("webhook_deliveries_due", "status", "next_attempt_at"),
    Index("webhook_deliveries_tenant", "tenant_id", "status"),
)


cases = Table(
    "cases",
    metadata,
    Column("case_id", Uuid, primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("case_type", String, nullable=False),
    Column("number", String, nullable=False),
    Column("status", String, nullable=False),
    Column("owner", String, nullable=False),
    Column("invoice_ids", Text, nullable=False),
    Column("review_round", Integer, nullable=False),
    Column("review_due_at", UTCDateTime, nullable=True),
    Column("reply_due_on", Date, nullable=True),
    Column("reminder_days", Integer, nullable=False),
    Column("reply_remind_at", UTCDateTime, nullable=True),
    Column("reply_due_at", UTCDateTime, nullable=True),
    Column("escalations", Text, nullable=False),
    Column("escalation_index", Integer, nullable=True),
    Column("escalation_due_at", UTCDateTime, nullable=True),
    Column("flagged", Integer, nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("position", BigInteger, nullable=False),
    Index("cases_tenant_status", "tenant_id", "case_type", "status"),
    Index("cases_number", "tenant_id", "number", unique=True),
)


merkle_leaves = Table(
    "merkle_leaves",
    metadata,
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False, unique=True),
    Column("stream_id", String, nullable=False),
    Column("stream_version", BigInteger, nullable=False),
    Column("tenant_id", String, nullable=True),
    Column("leaf_hash", String, nullable=False),
    Index("merkle_leaves_tenant", "tenant_id", "position"),
)

# The frontier (the tree's right edge as perfect subtrees) at each signed checkpoint's size:
# the next checkpoint is proven from it and the leaves appended since.
merkle_frontier = Table(
    "merkle_frontier",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("hash", String, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", String, nullable=False),
    Column("heads_count", BigInteger, nullable=False),
    Column("heads_root", String, nullable=False),
    Column("signed_at", UTCDateTime, nullable=False),
    Column("key_name", String, nullable=False),
    Column("note", Text, nullable=False),
)

# RFC 3161 timestamp tokens over a checkpoint's note body, one per TSA (append-only): the
# TSA's TimeStampResp in DER, base64.
checkpoint_timestamps = Table(
    "checkpoint_timestamps",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("tsa_url", String, primary_key=True),
    Column("token", Text, nullable=False),
    Column("gen_time", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)

# Witness cosignatures of a checkpoint (c2sp.org/tlog-cosignature), one per witness key
# (append-only): the note signature line as the witness sent it, without its newline.
checkpoint_cosignatures = Table(
    "checkpoint_cosignatures",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String, primary_key=True),
    Column("line", Text, nullable=False),
    Column("cosigned_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)

# Checkpoints announced to the tenants (the checkpoint.signed webhook), once each.
checkpoint_announcements = Table(
    "checkpoint_announcements",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("announced_at", UTCDateTime, nullable=False),
)

# Each time the log refused to sign (it could not prove the next checkpoint).
seal_incidents = Table(
    "seal_incidents",
    metadata,
    Column("incident_id", Uuid, primary_key=True),
    Column("detected_at", UTCDateTime, nullable=False, index=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
)


# Filled from the sealed access-record events (`position`); rows older than revision 0017
# were written directly and have none.
access_log = Table(
    "access_log",
    metadata,
    Column("access_id", Uuid, primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("key_id", String, nullable=True),
    Column("actor", String, nullable=False),
    Column("roles", String, nullable=False),
    Column("action", String, nullable=False),
    Column("subject", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("position", BigInteger, nullable=True),
    Index("access_log_tenant_at", "tenant_id", "at"),
    Index("access_log_position", "position", unique=True),
)


invoice_status_history = Table(
    "invoice_status_history",
    metadata,
    Column("invoice_id", Uuid, primary_key=True),
    Column("from_position", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant_id", String, nullable=False),
    Column("status", String, nullable=False),
    Column("to_position", BigInteger, nullable=True),
    Column("valid_from", UTCDateTime, nullable=False),
    Column("valid_to", UTCDateTime, nullable=True),
    Index("status_history_tenant_time", "tenant_id", "valid_from", "valid_to"),
)


streams = Table(
    "streams",
    metadata,
    Column("stream_id", Uuid, primary_key=True),
    Column("tenant_id", String, nullable=False, index=True),
    Column("first_topic", String, nullable=False),
)


def tracking_table(projection: str) -> Table:
    """The library's single-row tracking shape, one table per projection (research note 4.5)."""
    name = f"{projection}_tracking"
    if name in metadata.tables:
        return metadata.tables[name]
    return Table(
        name,
        metadata,
        Column("application_name", String, primary_key=True),
        Column("notification_id", BigInteger),
    )


PROJECTIONS = (
    "invoice_status",
    "ack_timers",
    "alerts",
    "cases",
    "seal",
    "access_log",
    "status_history",
    "streams",
)
for _name in PROJECTIONS:
    tracking_table(_name)
