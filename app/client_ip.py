"""The client's address, and the key per-IP limits count it under. A leaf: flask and settings only.

The address is `request.remote_addr`, which werkzeug's ProxyFix rewrites only
when TRUSTED_PROXY_COUNT says how many proxies to trust; a client-sent
X-Forwarded-For is never read here, or every client could choose its own key.

Limits key an IPv6 client by its network (IPV6_PREFIX_LENGTH, /64 by default),
not its address: one subscriber is handed a whole /64 and can rotate through
2^64 addresses, each of which would otherwise be a fresh anonymous quota.
An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 client it maps.
The audit log keeps the full address (`client_address`).
"""

from __future__ import annotations

import ipaddress

from flask import current_app, request

UNKNOWN = "unknown"
MAX_KEY_CHARS = 64  # a remote_addr that is not an IP (a unix socket path) still makes a bounded key


def limit_key(address: str | None, ipv6_prefix_length: int) -> str:
    """The per-IP limit key of `address`: IPv4 as is, IPv6 as its network of the given prefix."""
    if not address:
        return UNKNOWN
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])  # a zone id names a link, not a client
    except ValueError:
        return address[:MAX_KEY_CHARS]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        prefix = max(0, min(128, ipv6_prefix_length))
        return str(ipaddress.IPv6Network((parsed, prefix), strict=False))
    return str(parsed)


def client_address() -> str:
    """The request's full client address (what the audit log records)."""
    return request.remote_addr or UNKNOWN


def client_ip() -> str:
    """The current request's per-IP limit key (see `limit_key`)."""
    return limit_key(request.remote_addr, current_app.config["IPV6_PREFIX_LENGTH"])
