"""A tenant's policy for finding missing invoices and deciding its cases: the acknowledgement
window, the platform maintenance windows it has declared, the review deadline in working days and
the company's own closure days. Event-sourced, so an auditor can see which policy was in force
when an invoice was marked missing or a deadline was set."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import AggregateCreated, BaseAggregate

from domain.base import LedgerEvent, Provenance
from domain.bounds import NOTE_LENGTH, check_text, check_time
from domain.errors import InvalidCommandFieldError

POLICY_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fapiao-ledger:tenant-policy:v1")
DEFAULT_ACK_WINDOW = timedelta(hours=24)
MIN_WINDOW, MAX_WINDOW = timedelta(minutes=1), timedelta(days=60)
DEFAULT_REVIEW_DAYS = 3
MAX_CLOSURE_DAYS = 60  # per declaration


def policy_id(tenant_id: str) -> UUID:
    return uuid5(POLICY_NAMESPACE, tenant_id)


class TenantPolicy(BaseAggregate[UUID]):
    """One per tenant; created on first change, with the defaults before that."""

    TOPIC = "fapiao.tenant_policy"

    class Event(LedgerEvent):
        pass

    class Created(Event, AggregateCreated):
        """The tenant's policy starts with the default acknowledgement window."""

        TOPIC = "fapiao.tenant_policy.created.v1"
        tenant_id: str
        ack_window_seconds: int

        def apply(self, policy: TenantPolicy) -> None:
            policy.tenant_id = self.tenant_id
            policy.ack_window_seconds = self.ack_window_seconds

    class AckWindowSet(Event):
        """From now on, an invoice is missing if not acknowledged this long after submission."""

        TOPIC = "fapiao.tenant_policy.ack_window_set.v1"
        ack_window_seconds: int

        def apply(self, policy: TenantPolicy) -> None:
            policy.ack_window_seconds = self.ack_window_seconds

    class ReviewDaysSet(Event):
        """Supplementary-entry applications must be decided within this many working days."""

        TOPIC = "fapiao.tenant_policy.review_days_set.v1"
        review_working_days: int

        def apply(self, policy: TenantPolicy) -> None:
            policy.review_working_days = self.review_working_days

    class MaintenanceWindowDeclared(Event):
        """The platform is (or was) down from `starts_at` to `ends_at`: that time does not count."""

        TOPIC = "fapiao.tenant_policy.maintenance_window_declared.v1"
        window_id: UUID
        starts_at: datetime
        ends_at: datetime
        note: str

        def apply(self, policy: TenantPolicy) -> None:
            policy.windows[self.window_id] = (self.starts_at, self.ends_at, self.note)

    class MaintenanceWindowWithdrawn(Event):
        """A window declared by mistake no longer pauses the clock."""

        TOPIC = "fapiao.tenant_policy.maintenance_window_withdrawn.v1"
        window_id: UUID

        def apply(self, policy: TenantPolicy) -> None:
            policy.windows.pop(self.window_id, None)

    class ClosureDaysDeclared(Event):
        """The company is closed on these days (its own closure, beyond public holidays): they
        are not working days for its deadlines from now on. Deadlines already set stay."""

        TOPIC = "fapiao.tenant_policy.closure_days_declared.v1"
        days: list[date]
        note: str

        def apply(self, policy: TenantPolicy) -> None:
            for day in self.days:
                policy.closure_days[day] = self.note

    class ClosureDaysWithdrawn(Event):
        """These days are working days again (declared by mistake, or the closure called off)."""

        TOPIC = "fapiao.tenant_policy.closure_days_withdrawn.v1"
        days: list[date]

        def apply(self, policy: TenantPolicy) -> None:
            for day in self.days:
                policy.closure_days.pop(day, None)

    def __init__(self) -> None:
        self.tenant_id = ""
        self.ack_window_seconds = int(DEFAULT_ACK_WINDOW.total_seconds())
        self.windows: dict[UUID, tuple[datetime, datetime, str]] = {}
        self.review_working_days = DEFAULT_REVIEW_DAYS
        self.closure_days: dict[date, str] = {}

    @classmethod
    def start(cls, tenant_id: str, by: Provenance) -> TenantPolicy:
        return cls._create(
            cls.Created,
            id=policy_id(tenant_id),
            **by.fields(),
            tenant_id=tenant_id,
            ack_window_seconds=int(DEFAULT_ACK_WINDOW.total_seconds()),
        )

    def set_ack_window(self, by: Provenance, window: timedelta) -> None:
        if not MIN_WINDOW <= window <= MAX_WINDOW:
            raise InvalidCommandFieldError(
                "ack_window_hours", f"must be between {MIN_WINDOW} and {MAX_WINDOW}", "range"
            )
        self.trigger_event(
            self.AckWindowSet, **by.fields(), ack_window_seconds=int(window.total_seconds())
        )

    def set_review_days(self, by: Provenance, days: int) -> None:
        if not 1 <= days <= 60:
            raise InvalidCommandFieldError("review_working_days", "between 1 and 60", "range")
        self.trigger_event(self.ReviewDaysSet, **by.fields(), review_working_days=days)

    def declare_maintenance(
        self, by: Provenance, window_id: UUID, starts_at: datetime, ends_at: datetime, note: str
    ) -> None:
        if starts_at.tzinfo is None or ends_at.tzinfo is None:
            raise InvalidCommandFieldError("starts_at", "must carry a time zone", "aware")
        check_time("starts_at", starts_at)
        check_time("ends_at", ends_at)
        check_text("note", note, NOTE_LENGTH)
        if ends_at <= starts_at:
            raise InvalidCommandFieldError("ends_at", "must be after starts_at", "order")
        if ends_at - starts_at > timedelta(days=14):
            raise InvalidCommandFieldError("ends_at", "a window may last 14 days at most", "range")
        self.trigger_event(
            self.MaintenanceWindowDeclared,
            **by.fields(),
            window_id=window_id,
            starts_at=starts_at,
            ends_at=ends_at,
            note=note,
        )

    def withdraw_maintenance(self, by: Provenance, window_id: UUID) -> None:
        if window_id not in self.windows:
            raise InvalidCommandFieldError("window_id", f"no window {window_id}", "not_found")
        self.trigger_event(self.MaintenanceWindowWithdrawn, **by.fields(), window_id=window_id)

    def declare_closure_days(self, by: Provenance, days: list[date], note: str) -> None:
        if not 1 <= len(days) <= MAX_CLOSURE_DAYS:
            raise InvalidCommandFieldError(
                "days", f"between 1 and {MAX_CLOSURE_DAYS} days at a time", "range"
            )
        if any(not 2000 <= d.year <= 2100 for d in days):
            raise InvalidCommandFieldError("days", "years 2000 to 2100", "range")
        if len(note) > 200:
            raise InvalidCommandFieldError("note", "at most 200 characters", "max_length")
        check_text("note", note, 200)
        self.trigger_event(
            self.ClosureDaysDeclared, **by.fields(), days=sorted(set(days)), note=note.strip()
        )

    def withdraw_closure_days(self, by: Provenance, days: list[date]) -> None:
        unknown = sorted(d for d in set(days) if d not in self.closure_days)
        if not days or unknown:
            shown = ", ".join(d.isoformat() for d in unknown) or "none given"
            raise InvalidCommandFieldError("days", f"not closure days: {shown}", "not_found")
        self.trigger_event(self.ClosureDaysWithdrawn, **by.fields(), days=sorted(set(days)))
