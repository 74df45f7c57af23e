"""SSRF guard: where an action URL may point, checked at registration and again at connect time.

A URL is http(s) (https only in production), has no credentials, and every
address its host resolves to must be public: no loopback, private, link-local,
CGNAT, multicast, unspecified or reserved address, no cloud metadata address,
and none of those in disguise (IPv4-mapped `::ffff:a.b.c.d`, NAT64
`64:ff9b::/96`, 6to4, or numeric spellings like `0x7f000001`, `2130706433`,
`017700000001`, which the system resolver would turn into 127.0.0.1).

DNS rebinding: a name that resolved to a public address at registration may
resolve to a private one later. The delivery client therefore resolves once,
checks every answer, and connects to exactly the address it checked (see
app/webhooks/client.py): no second lookup happens between check and connect.

`resolver` is this module's name lookup; tests replace it (`set_resolver`) to
make a name resolve to chosen addresses without touching DNS or HTTP.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

MAX_URL_CHARS = 2048
# Always refused, even where private targets are allowed (local work and tests).
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# Characters a numeric IPv4 spelling may use (decimal, octal, hex parts, dots).
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)


class BlockedTarget(ValueError):
    """A URL or address Relay must not connect to; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written (lower case), without brackets: the Host header and the TLS server name
    port: int
    path: str  # path and query, at least "/"
    addresses: tuple[str, ...]  # every resolved address, each one checked


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


resolver: Resolver = _system_resolver


def set_resolver(function: Resolver | None) -> None:
    """Replace the name lookup (tests); None restores the system resolver."""
    global resolver
    resolver = function or _system_resolver


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def refusal(address: Address, allow_private: bool = False) -> str | None:
    """Why `address` may not be connected to, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # drop a zone id: it changes nothing here
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refusal(embedded, allow_private)
            return f"{reason} (inside an IPv6 address)" if reason else None
        if address in _NAT64_LOCAL or address.teredo is not None:
            return "a translated IPv6 address"
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_unspecified or address.is_multicast:
        return "an unspecified or multicast address"
    if allow_private:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a shared (CGNAT) address"
    if address.is_private or address.is_reserved or not address.is_global:
        return "a private or reserved address"
    return None


def literal_address(host: str) -> Address | None:
    """The address a host names by itself, in any spelling the system resolver accepts; else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))  # 0x7f000001, 2130706433, 0177.1 ...
        except OSError:
            return None
    return None


def parse_url(url: str, *, https_only: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable action URL, or BlockedTarget."""
    if len(url) > MAX_URL_CHARS or any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise BlockedTarget("the URL is too long or contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BlockedTarget("the URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedTarget("the URL must be http or https")
    if https_only and scheme != "https":
        raise BlockedTarget("the URL must be https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise BlockedTarget("the URL must not contain credentials")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise BlockedTarget("the URL has no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), path


def check_addresses(addresses: list[str], allow_private: bool) -> tuple[str, ...]:
    """Every address must be acceptable (a mixed answer is a rebinding trick): the checked list."""
    if not addresses:
        raise BlockedTarget("the host does not resolve")
    checked = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise BlockedTarget("the host resolves to something that is not an address") from None
        reason = refusal(address, allow_private)
        if reason:
            raise BlockedTarget(f"the host resolves to {reason}")
        checked.append(str(address))
    return tuple(checked)


def resolve_target(url: str, *, allow_private: bool, https_only: bool) -> Target:
    """Parse, resolve once and check `url`; the Target names the only addresses to connect to."""
    scheme, host, port, path = parse_url(url, https_only=https_only)
    literal = literal_address(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError):
            raise BlockedTarget("the host does not resolve") from None
    return Target(scheme, host, port, path, check_addresses(addresses, allow_private))
