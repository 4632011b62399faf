"""The console's texts in Chinese (the default) and English, from one catalogue
(`catalogue.toml` beside this module), and the translation of errors into them.

Errors are translated by what they are, not by their English text: a refused step by its
status and step, a field error by its field and rule, separation of duties by the earlier role.
The English detail stays available (a tooltip) for whoever reports a problem.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from application.access import ForbiddenError
from application.service_errors import (
    ConcurrencyConflictError,
    IdempotencyKeyReusedError,
    InvoiceAlreadyExistsError,
    ProjectionLagError,
)
from domain.errors import (
    CorrectionNotAllowedError,
    DomainError,
    InvalidFieldError,
    InvalidTransitionError,
    SeparationOfDutiesError,
    ValidationFailedError,
)

LANGUAGES = ("zh", "en")
DEFAULT = "zh"
CATALOGUE = Path(__file__).with_name("catalogue.toml")


@cache
def catalogue() -> dict[str, dict[str, str]]:
    """Key ("section.name") -> {"zh": ..., "en": ...}."""
    raw = tomllib.loads(CATALOGUE.read_text(encoding="utf-8"))
    return {
        f"{section}.{name}": texts
        for section, items in raw.items()
        for name, texts in items.items()
    }


def language(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT


@dataclass(frozen=True)
class Translator:
    """`t("status.missing")` in one language; unknown keys show themselves (never a blank)."""

    lang: str

    def __call__(self, key: str, **params: Any) -> str:
        entry = catalogue().get(key)
        text = entry[self.lang] if entry else key
        return text.format(**params) if params else text

    def get(self, section: str, name: str | None) -> str:
        """A value's label (a status, event, role ...), or the value itself if it has none."""
        if name is None:
            return ""
        entry = catalogue().get(f"{section}.{name}")
        return entry[self.lang] if entry else name

    def event(self, topic: str) -> str:
        """An event by its stored topic (`fapiao.invoice.submitted.v1`), version dropped."""
        stem = topic.rsplit(".v", 1)[0] if ".v" in topic else topic
        return self.get("event", stem)

    def field(self, path: str) -> str:
        """A field path (`invoices[0].fields`, `buyer.taxpayer_code`) in words."""
        base = path.split("[")[0] if "[" in path and "." not in path.split("]")[-1] else path
        for candidate in (path, base, path.rsplit(".", 1)[-1]):
            if f"field.{candidate}" in catalogue():
                return self(f"field.{candidate}")
        return path

    def roles(self, roles: Any) -> str:
        return "、".join(self.get("role", str(r)) for r in sorted(roles)) if roles else ""

    def field_error(self, e: InvalidFieldError) -> str:
        rule = self.get("rule", e.rule) if f"rule.{e.rule}" in catalogue() else e.message
        return (
            f"{self.field(e.field)}：{rule}"
            if self.lang == "zh"
            else f"{self.field(e.field)}: {rule}"
        )

    def error(self, exc: Exception) -> tuple[str, list[str]]:
        """A refusal in words: a headline and, for input errors, one line per field."""
        if isinstance(exc, ValidationFailedError):
            return self("error.fields"), [self.field_error(e) for e in exc.errors]
        if isinstance(exc, InvalidFieldError):
            return self("error.fields"), [self.field_error(exc)]
        if isinstance(exc, InvalidTransitionError):
            if exc.current in {s.split(".", 1)[1] for s in catalogue() if s.startswith("status.")}:
                return self(
                    "error.transition",
                    current=self.get("status", exc.current),
                    step=self.get("step", exc.step),
                ), []
            return self("error.case_transition", current=self.get("case", exc.current)), []
        if isinstance(exc, SeparationOfDutiesError):
            key = {"applicant": "sod_applicant", "reviewer": "sod_reviewer"}.get(
                exc.earlier, "sod_not_applicant"
            )
            return self(f"error.{key}", step=self.get("step", exc.step)), []
        if isinstance(exc, ForbiddenError):
            need = " / ".join(self.get("role", r) for r in sorted(exc.needed))
            return self("error.forbidden", have=self.roles(exc.roles), need=need), []
        if isinstance(exc, InvoiceAlreadyExistsError):
            return self("error.exists", keys=", ".join(exc.keys)), []
        if isinstance(exc, IdempotencyKeyReusedError):
            return self("error.idempotency"), []
        if isinstance(exc, ConcurrencyConflictError):
            return self("error.conflict"), []
        if isinstance(exc, ProjectionLagError):
            return self("error.lag"), []
        if isinstance(exc, CorrectionNotAllowedError):
            return self("error.correction", detail=str(exc)), []
        if isinstance(exc, DomainError):
            return self("error.generic", detail=str(exc)), []
        return self("error.generic", detail=str(exc)), []
