"""The one door for this room's outbound HTTP (TSA and witness clients): every request to a
time-stamping authority or a witness goes through `post` here, so one guard (schemes, hosts,
internal addresses) applies to all of them."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

MAX_RESPONSE_BYTES = 1 << 20  # a TSA token or a witness answer is a few KiB


class OutboundRefusedError(ValueError):
    """The URL may not be called (not http(s), or no host)."""


def check_url(url: str) -> str:
    """http(s) with a host, else OutboundRefusedError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefusedError(f"{url!r}: only http(s) URLs with a host are called")
    return url


def post(url: str, content: bytes, content_type: str, timeout: float = 10.0) -> httpx.Response:
    """POST `content` to `url` (bounded answer); httpx.HTTPError on a transport failure."""
    check_url(url)
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        with client.stream(
            "POST", url, content=content, headers={"Content-Type": content_type}
        ) as response:
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise httpx.DecodingError(f"{url}: answer larger than {MAX_RESPONSE_BYTES}")
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                content=body,
                request=response.request,
            )
