"""Every broken business rule is a named error, so the edge can map them by class.

Hierarchy::

    DomainError
    ├── InvalidFieldError              one input rule broken; names the field and the rule
    │   ├── InvalidInvoiceKeyError
    │   ├── InvalidTaxpayerCodeError
    │   ├── InvalidInvoiceTypeError
    │   ├── IssueDateInFutureError
    │   ├── InvalidMoneyError
    │   ├── TotalMismatchError
    │   ├── TaxOutOfToleranceError
    │   ├── UnknownTaxRateError
    │   ├── InvalidLineItemError
    │   └── InvalidCommandFieldError   a field of a lifecycle command (reason code, ...)
    ├── ValidationFailedError          several InvalidFieldErrors reported together
    ├── InvalidTransitionError         the step is not allowed from the current status
    ├── CorrectionNotAllowedError      void/red-reversal refused by the correction rules
    └── SeparationOfDutiesError        the same person may not apply, review and approve
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every business-rule violation raised by the domain."""


class InvalidFieldError(DomainError):
    """One input field breaks one rule. `field` is a dotted path, `rule` a stable code."""

    rule: str = "invalid"

    def __init__(self, field: str, message: str, rule: str | None = None) -> None:
        self.field = field
        self.message = message
        if rule is not None:
            self.rule = rule
        super().__init__(f"{field}: {message} [{self.rule}]")

    def at(self, prefix: str) -> InvalidFieldError:
        """The same error with its field path nested under `prefix`."""
        return type(self)(f"{prefix}.{self.field}", self.message, self.rule)


class InvalidInvoiceKeyError(InvalidFieldError):
    rule = "invoice_key"


class InvalidTaxpayerCodeError(InvalidFieldError):
    rule = "taxpayer_code"


class InvalidInvoiceTypeError(InvalidFieldError):
    rule = "invoice_type"


class IssueDateInFutureError(InvalidFieldError):
    rule = "issue_date_in_future"


class InvalidMoneyError(InvalidFieldError):
    rule = "money_format"


class TotalMismatchError(InvalidFieldError):
    rule = "total_mismatch"


class TaxOutOfToleranceError(InvalidFieldError):
    rule = "tax_tolerance"


class UnknownTaxRateError(InvalidFieldError):
    rule = "tax_rate"


class InvalidLineItemError(InvalidFieldError):
    rule = "line_item"


class InvalidCommandFieldError(InvalidFieldError):
    rule = "command_field"


class ValidationFailedError(DomainError):
    """All the rules an input broke, reported at once so a clerk fixes them in one pass."""

    def __init__(self, errors: list[InvalidFieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


class InvalidTransitionError(DomainError):
    """A lifecycle step that the current status does not allow."""

    def __init__(self, current: str, step: str, subject: str = "an invoice") -> None:
        self.current = current
        self.step = step
        super().__init__(f"cannot {step} {subject} that is {current}")


class CorrectionNotAllowedError(DomainError):
    """A void or red-letter reversal that the correction rules (DOMAIN.md 4) refuse."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(message)


class SeparationOfDutiesError(DomainError):
    """Applicant, reviewer and approver of a case must be three different people."""

    def __init__(self, person: str, step: str, earlier: str) -> None:
        self.person, self.step, self.earlier = person, step, earlier
        super().__init__(f"{person} may not {step}: they are this case's {earlier}")
