"""Query parameter types with their bounds (domain.bounds), shared by the routes."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import Query

from domain.bounds import MAX_MONEY, MAX_POSITION

Position = Annotated[int, Query(ge=0, le=MAX_POSITION, description="A log position")]
OptionalPosition = Annotated[int | None, Query(ge=0, le=MAX_POSITION)]
Offset = Annotated[int, Query(ge=0, le=MAX_POSITION, description="Rows to skip")]
ConsistentAfter = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_POSITION,
        description="Wait (bounded) until the view includes this log position; a position "
        "beyond the log's head is refused (422) at once",
    ),
]
MoneyFilter = Annotated[
    Decimal | None,
    Query(
        ge=-MAX_MONEY,
        le=MAX_MONEY,
        allow_inf_nan=False,
        max_digits=18,
        decimal_places=2,
        description="A decimal amount (numeric(18,2))",
    ),
]
