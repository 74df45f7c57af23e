"""Per-IP limits key an IPv6 client by its /64 (IPV6_PREFIX_LENGTH) and an IPv4-mapped one as IPv4.

One subscriber is handed a whole /64: keyed per address, it could rotate
through 2^64 fresh anonymous quotas. The audit log still records the full address.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.client_ip import limit_key
from tests.limits.conftest import anon_token, assert_429, auth, post_stream

ONE_NET = ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2:abcd::9")
NEXT_NET = "2001:db8:1:3::1"


@pytest.mark.parametrize(
    ("address", "prefix", "key"),
    [
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::7", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("::ffff:198.51.100.5", 64, "198.51.100.5"),
        ("::ffff:c633:6405", 64, "198.51.100.5"),
        ("198.51.100.5", 64, "198.51.100.5"),
        ("", 64, "unknown"),
        (None, 64, "unknown"),
        ("/run/relay.sock" + "x" * 100, 64, ("/run/relay.sock" + "x" * 100)[:64]),
    ],
)
def test_limit_key(address, prefix, key):
    assert limit_key(address, prefix) == key


def test_anon_mint_is_shared_by_one_slash_64(limits_app):
    client = limits_app(LIMIT_ANON_MINT="2/3600").test_client()

    def mint(address: str):
        return client.post("/api/v1/anon_session", environ_base={"REMOTE_ADDR": address})

    assert mint(ONE_NET[0]).status_code == 200
    assert mint(ONE_NET[1]).status_code == 200
    assert_429(mint(ONE_NET[2]), "quota_exceeded", "anon_mint")
    assert mint(NEXT_NET).status_code == 200


def test_global_ip_is_shared_by_one_slash_64(limits_app):
    client = limits_app(LIMIT_GLOBAL_IP="2/60").test_client()

    def get(address: str):
        return client.get("/api/v1/models", environ_base={"REMOTE_ADDR": address})

    assert get(ONE_NET[0]).status_code == 200
    assert get(ONE_NET[1]).status_code == 200
    assert_429(get(ONE_NET[2]), "rate_limited", "global_ip")
    assert get(NEXT_NET).status_code == 200


@pytest.mark.parametrize(
    ("setting", "limit"), [("LIMIT_STREAM_IP", "stream_ip"), ("LIMIT_ANON_IP_HOURLY", "anon_ip_hourly")]
)
def test_stream_limits_are_shared_by_one_slash_64(limits_app, setting, limit):
    app = limits_app(**{setting: "2/3600"})
    client = app.test_client()
    code = "quota_exceeded" if limit == "anon_ip_hourly" else "rate_limited"
    # A fresh anonymous principal each time: only the address ties these streams together.
    assert post_stream(client, anon_token(app), ONE_NET[0]).status_code == 200
    assert post_stream(client, anon_token(app), ONE_NET[1]).status_code == 200
    assert_429(post_stream(client, anon_token(app), ONE_NET[2]), code, limit)
    assert post_stream(client, anon_token(app), NEXT_NET).status_code == 200


def test_auth_failures_are_shared_by_one_slash_64(limits_app, user_a_headers):
    client = limits_app(LIMIT_AUTH_FAILURES="2/300").test_client()
    bad = auth("not-a-token")
    for address in ONE_NET[:2]:
        assert (
            client.get("/api/v1/conversations", headers=bad, environ_base={"REMOTE_ADDR": address}).status_code == 401
        )
    refused = client.get("/api/v1/conversations", headers=user_a_headers, environ_base={"REMOTE_ADDR": ONE_NET[2]})
    assert_429(refused, "rate_limited", "auth_failures")
    other = client.get("/api/v1/conversations", headers=user_a_headers, environ_base={"REMOTE_ADDR": NEXT_NET})
    assert other.status_code == 200


def test_an_ipv4_mapped_address_is_its_ipv4_client(limits_app):
    client = limits_app(LIMIT_ANON_MINT="2/3600").test_client()
    for address in ("198.51.100.5", "::ffff:198.51.100.5"):
        assert client.post("/api/v1/anon_session", environ_base={"REMOTE_ADDR": address}).status_code == 200
    refused = client.post("/api/v1/anon_session", environ_base={"REMOTE_ADDR": "::ffff:c633:6405"})
    assert_429(refused, "quota_exceeded", "anon_mint")


def test_behind_a_trusted_proxy_the_forwarded_address_is_keyed_by_its_slash_64(limits_app):
    client = limits_app(LIMIT_ANON_MINT="2/3600", TRUSTED_PROXY_COUNT="1").test_client()

    def mint(forwarded: str):
        return client.post("/api/v1/anon_session", headers={"X-Forwarded-For": forwarded})

    # The client prepends what it likes; the proxy appends the address it saw, which is the key.
    assert mint(f"203.0.113.1, {ONE_NET[0]}").status_code == 200
    assert mint(f"203.0.113.2, {ONE_NET[1]}").status_code == 200
    assert_429(mint(f"{NEXT_NET}, {ONE_NET[2]}"), "quota_exceeded", "anon_mint")
    assert mint(f"{ONE_NET[0]}, {NEXT_NET}").status_code == 200


def test_a_spoofed_x_forwarded_for_without_a_trusted_proxy_changes_nothing(limits_app):
    client = limits_app(LIMIT_ANON_MINT="2/3600").test_client()

    def mint(forwarded: str):
        headers = {"X-Forwarded-For": forwarded}
        return client.post("/api/v1/anon_session", headers=headers, environ_base={"REMOTE_ADDR": ONE_NET[0]})

    assert mint(NEXT_NET).status_code == 200
    assert mint("2001:db8:9::1").status_code == 200
    assert_429(mint("198.51.100.77"), "quota_exceeded", "anon_mint")


def test_the_audit_log_keeps_the_full_address(limits_app):
    from app.db import AuditEvent
    from app.extensions import database

    app = limits_app()
    client = app.test_client()
    address = "2001:db8:1:2:dead:beef:0:42"
    response = client.get("/api/v1/conversations", headers=auth("not-a-token"), environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 401
    with app.app_context(), database.session() as session:
        ips = session.scalars(select(AuditEvent.ip).where(AuditEvent.type == "auth_failure")).all()
    assert ips == [address]
