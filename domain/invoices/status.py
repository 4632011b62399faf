"""Invoice statuses and the table of which lifecycle step is allowed from which status.

`missing` is the heart of the product: the enterprise believes the invoice is in the platform
and the platform does not have it (DESIGN.md 2). An approved supplementary entry re-enters it.
"""

from __future__ import annotations

from enum import StrEnum


class InvoiceStatus(StrEnum):
    ISSUED = "issued"
    SUBMITTED = "submitted"
    SUBMISSION_FAILED = "submission_failed"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    MISSING = "missing"
    VOIDED = "voided"
    PARTIALLY_REVERSED = "partially_reversed"
    REVERSED = "reversed"
    RE_ENTERED = "re_entered"


class Step(StrEnum):
    SUBMIT = "submit"
    FAIL_SUBMISSION = "record a failed submission of"
    ACKNOWLEDGE = "acknowledge"
    REJECT = "reject"
    MARK_MISSING = "mark missing"
    VOID = "void"
    RED_REVERSE = "red-reverse"
    RE_ENTER = "re-enter"


S = InvoiceStatus
ALLOWED_FROM: dict[Step, frozenset[InvoiceStatus]] = {
    # Re-upload after a failure, a rejection (corrected data) or a loss.
    Step.SUBMIT: frozenset({S.ISSUED, S.SUBMISSION_FAILED, S.REJECTED, S.MISSING}),
    Step.FAIL_SUBMISSION: frozenset({S.SUBMITTED}),
    # The ledger records what happened: a late or unexpected acknowledgement is accepted.
    Step.ACKNOWLEDGE: frozenset({S.SUBMITTED, S.SUBMISSION_FAILED, S.MISSING, S.RE_ENTERED}),
    Step.REJECT: frozenset({S.SUBMITTED, S.SUBMISSION_FAILED, S.MISSING, S.RE_ENTERED}),
    # An acknowledged invoice can go missing too: the platform's own export lacks it.
    Step.MARK_MISSING: frozenset({S.SUBMITTED, S.ACKNOWLEDGED, S.RE_ENTERED}),
    Step.VOID: frozenset({S.ISSUED, S.SUBMISSION_FAILED, S.REJECTED, S.ACKNOWLEDGED}),
    Step.RED_REVERSE: frozenset({S.ACKNOWLEDGED, S.PARTIALLY_REVERSED}),
    # An approved supplementary-entry application (补录) re-enters a missing or rejected invoice.
    Step.RE_ENTER: frozenset({S.MISSING, S.REJECTED}),
}

TERMINAL = frozenset({S.VOIDED, S.REVERSED})
