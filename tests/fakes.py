"""Fakes for external ports only (STYLE.md 8). The clock is the product's own simulated clock
(the platform simulation needs one too), under the name the tests use."""

from __future__ import annotations

from infrastructure.clock import SimulatedClock as SettableClock

__all__ = ["SettableClock"]
