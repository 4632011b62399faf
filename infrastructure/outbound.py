"""The outbound guard: every request this service makes to an address a tenant (or an operator)
named goes through here (webhooks now; timestamp authorities and witnesses later).

- Only `http` and `https` URLs with a host; no userinfo, no whitespace or control characters,
  a bounded length, a valid port.
- The host is resolved once per request and every address it resolves to must be public
  (`ipaddress` says `is_global`, and not multicast); loopback, private, link-local (the cloud
  metadata address), shared, reserved and unspecified ranges are refused unless an operator
  allows them (`FAPIAO_OUTBOUND_ALLOW`: CIDR ranges or host names, comma-separated). The
  connection goes to the address that was checked (no second lookup to rebind), with TLS
  verified against the host name.
- Redirects are followed a bounded number of times, each target checked the same way.
- Failures tell the caller that it failed and, for an answer over HTTP, its status; never what
  the network said (refused, timed out, reset, unreachable, TLS details): a tenant must not be
  able to map ports or hosts through the error.

Call `OutboundGuard.check_url(url)` when a URL is registered and `OutboundGuard.post(...)` to
send to it.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

MAX_URL_LENGTH = 2048
MAX_REDIRECTS = 3
MAX_RESPONSE_BYTES = 64 * 1024  # what is read of an answer (webhooks ignore the body)
_REDIRECTS = {301, 302, 303, 307, 308}

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefusedError(ValueError):
    """The URL (or where it leads) may not be contacted. The message is safe to show."""


class OutboundFailedError(Exception):
    """The request was allowed but did not get an HTTP answer. The message is safe to show."""


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    url: str  # where the answer came from, after redirects
    body: bytes  # at most MAX_RESPONSE_BYTES


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def parse_allow(setting: str) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    """`FAPIAO_OUTBOUND_ALLOW`: comma-separated CIDR ranges (or single addresses) and host names."""
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for part in (p.strip() for p in setting.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            hosts.add(part.lower().rstrip("."))
    return tuple(networks), frozenset(hosts)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address in the last 32 bits


def _is_public(address: IPAddress) -> bool:
    """Public unicast; an IPv6 form that carries an IPv4 address (mapped, 6to4, NAT64) is
    judged by that address, and other reserved IPv6 (IPv4-compatible `::a.b.c.d`) refused."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _is_public(address.ipv4_mapped)
        if address.sixtofour is not None:
            return _is_public(address.sixtofour)
        if address in _NAT64:
            return _is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not address.is_multicast and not address.is_reserved


@dataclass(frozen=True)
class OutboundGuard:
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    resolver: Resolver = field(default=_system_resolver, compare=False)
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_setting(cls, setting: str, resolver: Resolver | None = None) -> OutboundGuard:
        networks, hosts = parse_allow(setting)
        return cls(networks, hosts, resolver or _system_resolver)

    # ---- checks ------------------------------------------------------------------------------

    def check_url(self, url: str) -> tuple[str, str, int, str]:
        """The URL's (scheme, host, port, path+query) if its form is allowed; raises
        OutboundRefusedError naming the rule otherwise. No lookup is made."""
        if len(url) > MAX_URL_LENGTH:
            raise OutboundRefusedError(f"url is longer than {MAX_URL_LENGTH} characters")
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise OutboundRefusedError("url must not contain whitespace or control characters")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise OutboundRefusedError("url must be http:// or https://")
        if "@" in parts.netloc:
            raise OutboundRefusedError("url must not carry a user name or password")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise OutboundRefusedError("url has an invalid port") from None
        if not host:
            raise OutboundRefusedError("url must name a host")
        if port == 0:
            raise OutboundRefusedError("url has an invalid port")
        port = port or (443 if parts.scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return parts.scheme, host.lower().rstrip("."), port, path

    def _allowed(self, host: str, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if host in self.allow_hosts or any(ip in n for n in self.allow_networks):
            return True
        return _is_public(ip)

    def resolve(self, host: str, port: int) -> str:
        """The one address to connect to; every address the host has must be allowed (a name
        that resolves to a public and a private address is refused)."""
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            try:
                addresses = self.resolver(host, port)
            except (OSError, UnicodeError):
                raise OutboundFailedError(
                    "could not deliver: the host name does not resolve"
                ) from None
        if not addresses:
            raise OutboundFailedError("could not deliver: the host name does not resolve")
        if not all(self._allowed(host, a) for a in addresses):
            raise OutboundRefusedError(
                "url leads to an internal or reserved address (not allowed for outbound requests)"
            )
        return addresses[0]

    def check(self, url: str) -> None:
        """Registration: the form, and where the host leads now if it resolves (a name that
        does not resolve yet is kept: it is checked again on every request)."""
        _, host, port, _ = self.check_url(url)
        try:
            self.resolve(host, port)
        except OutboundFailedError:
            pass

    # ---- requests ----------------------------------------------------------------------------

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> OutboundResponse:
        """POST `body` to `url`, following redirects (307/308 keep the POST; 301/302/303 become
        a GET without body), each hop checked. Raises OutboundRefusedError or
        OutboundFailedError; an HTTP answer of any status is returned."""
        method, payload = "POST", body
        for _ in range(self.max_redirects + 1):
            response, location = self._once(method, url, payload, headers, timeout)
            if response.status not in _REDIRECTS or not location:
                return response
            url = urljoin(url, location)
            if response.status in (301, 302, 303):
                method, payload = "GET", b""
        raise OutboundFailedError(f"could not deliver: more than {self.max_redirects} redirects")

    def _once(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[OutboundResponse, str | None]:
        scheme, host, port, path = self.check_url(url)
        address = self.resolve(host, port)
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = _PinnedHTTPSConnection(host, port, address, timeout)
        else:
            connection = _PinnedHTTPConnection(host, port, address, timeout)
        try:
            send_headers = dict(headers)
            if method == "GET":
                send_headers.pop("Content-Type", None)
            connection.request(method, path, body=body or None, headers=send_headers)
            answer = connection.getresponse()
            data = answer.read(MAX_RESPONSE_BYTES)
            location = answer.getheader("Location")
            return OutboundResponse(answer.status, url, data), location
        except (OSError, http.client.HTTPException, ssl.SSLError):
            # Refused, timed out, reset, TLS: all the same to the tenant (no port scanning).
            raise OutboundFailedError("could not deliver: no HTTP answer") from None
        finally:
            connection.close()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the name resolves to by now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
