"""The SSRF guard: refused at registration (production-like: private targets not allowed) and at connect time."""

from __future__ import annotations

import ipaddress

import pytest

from app.webhooks import ssrf
from tests.webhooks.conftest import register

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "100.127.255.254",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "fd00:ec2::254",
    "fc00::1",
    "fe80::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::1",
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "2001:db8::1",  # documentation
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
]
PUBLIC_ADDRESSES = ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34", "64:ff9b::808:808"]


@pytest.mark.parametrize("text", REFUSED_ADDRESSES)
def test_non_public_addresses_are_refused(text):
    assert ssrf.refusal(ipaddress.ip_address(text)) is not None


@pytest.mark.parametrize("text", PUBLIC_ADDRESSES)
def test_public_addresses_pass(text):
    assert ssrf.refusal(ipaddress.ip_address(text)) is None


@pytest.mark.parametrize("text", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "0.0.0.0", "224.0.0.1"])
def test_metadata_unspecified_and_multicast_are_refused_even_where_private_targets_are_allowed(text):
    assert ssrf.refusal(ipaddress.ip_address(text), allow_private=True) is not None


@pytest.mark.parametrize(
    ("host", "address"),
    [("0x7f000001", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("017700000001", "127.0.0.1"), ("127.1", "127.0.0.1"),
     ("0177.0.0.1", "127.0.0.1"), ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254")],
)  # fmt: skip
def test_numeric_spellings_are_read_as_the_resolver_would(host, address):
    assert str(ssrf.literal_address(host)) == address


def test_https_only_in_production():
    with pytest.raises(ssrf.BlockedTarget, match="https"):
        ssrf.parse_url("http://hooks.example.com/x", https_only=True)
    assert ssrf.parse_url("https://hooks.example.com/x?a=1", https_only=True) == (
        "https", "hooks.example.com", 443, "/x?a=1",
    )  # fmt: skip


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example.com/", "file:///etc/passwd", "gopher://x/", "https://user:pw@hooks.example.com/",
     "https://hooks.example.com:99999/", "https:///nohost", "https://hooks.example.com/a b", "javascript:alert(1)"],
)  # fmt: skip
def test_malformed_urls_are_refused(url):
    with pytest.raises(ssrf.BlockedTarget):
        ssrf.resolve_target(url, allow_private=False, https_only=False)


def test_a_mixed_answer_is_refused_whole(names):
    names["mixed.example.test"] = ["93.184.216.34", "10.0.0.7"]
    with pytest.raises(ssrf.BlockedTarget, match="private"):
        ssrf.resolve_target("https://mixed.example.test/", allow_private=False, https_only=True)


# -- at registration, through the API, with private targets not allowed -------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/hook",
        "http://0x7f000001/hook",
        "http://2130706433/hook",
        "http://017700000001/hook",
        "http://[::1]:8080/hook",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://100.64.1.1/",
        "http://localhost:5000/hook",
        "http://private.example.test/hook",
        "http://nowhere.example.test/hook",
    ],
)
def test_registration_refuses_urls_that_are_not_public(client, user_a_headers, names, url):
    names["private.example.test"] = ["10.1.2.3"]
    response = register(client, user_a_headers, "blocked", url)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and error["details"]["fields"]["url"]
    assert client.get("/api/v1/actions", headers=user_a_headers).get_json()["count"] == 0


def test_registration_accepts_a_name_that_resolves_public(client, user_a_headers, names):
    names["hooks.example.test"] = ["93.184.216.34"]  # only resolved: nothing is ever sent to it
    assert register(client, user_a_headers, "public", "https://hooks.example.test/x").status_code == 201


def test_production_refuses_plain_http(make_app, user_a_headers, names):
    names["hooks.example.test"] = ["93.184.216.34"]
    client = make_app(RELAY_ENV="production").test_client()
    response = register(client, user_a_headers, "plain", "http://hooks.example.test/x")
    assert response.status_code == 422 and "https" in response.get_json()["error"]["details"]["fields"]["url"][0]
