"""The one door for the anchors' HTTP (TSA and witness clients): every request goes through
the outbound guard (infrastructure/outbound.py: http(s) with a host only, internal addresses
refused after resolution unless FAPIAO_OUTBOUND_ALLOW allows them, redirects checked)."""

from __future__ import annotations

from infrastructure.outbound import (
    OutboundFailedError,
    OutboundGuard,
    OutboundRefusedError,
    OutboundResponse,
)


class TransportError(Exception):
    """The request was refused by the guard or got no HTTP answer (the reason is safe to show)."""


def check_url(guard: OutboundGuard, url: str) -> str:
    """The URL if its form is allowed (no lookup); ValueError naming the rule otherwise."""
    try:
        guard.check_url(url)
    except OutboundRefusedError as e:
        raise ValueError(f"{url}: {e}") from None
    return url


def post(
    guard: OutboundGuard, url: str, content: bytes, content_type: str, timeout: float
) -> OutboundResponse:
    """POST through the guard; an HTTP answer of any status is returned."""
    try:
        return guard.post(url, content, {"Content-Type": content_type}, timeout)
    except (OutboundRefusedError, OutboundFailedError) as e:
        raise TransportError(str(e)) from None
