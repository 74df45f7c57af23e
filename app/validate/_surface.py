"""What any client can see: limits, CORS, security headers, /health, /metrics and plain http."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

import requests

from ._target import FAIL, PASS, SKIP, Result, Target, bearer, error_code, seen

EVIL_ORIGIN = "https://evil.example"
MIN_HSTS_SECONDS = 180 * 86400  # browsers' preload lists ask for at least this much
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
HEALTH_PATHS = ("/health", "/health/ready")
# What /health must never show: where things are, credentials, or what software (and version) runs.
LEAKS = (
    (re.compile(r"[a-z][a-z0-9+.-]*://", re.I), "a URL"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "an IP address"),
    (re.compile(r"relay_sk_|whsec_|\bsk-[A-Za-z0-9]{8}|eyJ[A-Za-z0-9_-]{8,}"), "a credential"),
    (re.compile(r"[A-Za-z0-9+/_-]{32,}"), "a secret-like string"),
    (
        re.compile(r"(?i)\b(redis|postgres\w*|psycopg|sqlite|python|gunicorn|celery|flask|werkzeug|gevent)\b"),
        "a dependency",
    ),
)
SENSITIVE_KEY = re.compile(r"(?i)url|host|dsn|secret|password|token|key|path|dir|env")
VERSION = re.compile(r"\b\d+\.\d+(?:\.\d+)?\b")  # Relay's own `version` is the one allowed
VERSIONED_SOFTWARE = re.compile(r"[A-Za-z]+/\d")  # `Server: gunicorn/22.0`, `Werkzeug/3.0 Python/3.11`


def check_rate_limit_headers(target: Target) -> Result:
    """A limited endpoint answers with X-RateLimit-Limit, -Remaining and -Reset."""
    response = target.request("GET", "/api/v1/models")
    missing = [name for name in RATE_HEADERS if not response.headers.get(name, "").isdigit()]
    if response.status_code != 200 or missing:
        return Result("rate_limit_headers", FAIL, f"GET /api/v1/models: {seen(response)}, missing {missing}")
    values = ", ".join(f"{name.removeprefix('X-RateLimit-')} {response.headers[name]}" for name in RATE_HEADERS)
    return Result("rate_limit_headers", PASS, f"GET /api/v1/models: {values}")


def check_retry_after(target: Target) -> Result:
    """With --token: GET /api/v1/usage until 429 (bounded), which carries Retry-After and details.limit."""
    if not target.token:
        return Result("retry_after", SKIP, "needs --token of a test principal (it exhausts that caller's limits)")
    for sent in range(1, target.max_requests + 1):
        response = target.request("GET", "/api/v1/usage", headers=bearer(target.token))
        if response.status_code == 429:
            retry_after = response.headers.get("Retry-After", "")
            limit = (response.json().get("error", {}).get("details") or {}).get("limit")
            if retry_after.isdigit() and int(retry_after) >= 1 and limit and error_code(response):
                return Result("retry_after", PASS, f"429 {error_code(response)} after {sent} requests, "
                              f"Retry-After {retry_after}, limit {limit}")  # fmt: skip
            return Result("retry_after", FAIL, f"429 after {sent}: Retry-After {retry_after!r}, limit {limit!r}")
        if response.status_code != 200:
            return Result("retry_after", FAIL, f"GET /api/v1/usage with --token: {seen(response)}")
    return Result("retry_after", FAIL, f"no 429 after {target.max_requests} requests")


def check_cors(target: Target) -> Result:
    """A foreign origin gets no Access-Control-Allow-Origin, on a preflight or a plain request."""
    preflight = {
        "Origin": EVIL_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    answers = {
        "OPTIONS /api/v1/stream": target.request("OPTIONS", "/api/v1/stream", headers=preflight),
        "GET /api/v1/models": target.request("GET", "/api/v1/models", headers={"Origin": EVIL_ORIGIN}),
    }
    for what, response in answers.items():
        allowed = response.headers.get("Access-Control-Allow-Origin")
        if allowed:
            return Result("cors", FAIL, f"{what} from {EVIL_ORIGIN}: Access-Control-Allow-Origin: {allowed}")
    return Result("cors", PASS, f"{EVIL_ORIGIN}: no Access-Control-Allow-Origin on a preflight or a GET")


def _header_problems(response: requests.Response, https: bool) -> list[str]:
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.split()}
    problems = []
    if "default-src" not in directives:
        problems.append("no Content-Security-Policy default-src")
    scripts = directives.get("script-src", directives.get("default-src", []))
    if any(source in scripts for source in ("*", "'unsafe-inline'", "'unsafe-eval'")):
        problems.append(f"script-src allows {' '.join(scripts)}")
    if headers.get("X-Content-Type-Options", "").lower() != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    framing = headers.get("X-Frame-Options", "").upper() in ("DENY", "SAMEORIGIN")
    if not framing and "frame-ancestors" not in directives:
        problems.append("neither X-Frame-Options nor CSP frame-ancestors")
    if https:
        match = re.search(r"max-age=(\d+)", headers.get("Strict-Transport-Security", ""))
        if not match or int(match.group(1)) < MIN_HSTS_SECONDS:
            problems.append(f"Strict-Transport-Security {headers.get('Strict-Transport-Security')!r}")
    return problems


def check_security_headers(target: Target) -> Result:
    """CSP, nosniff, frame options or frame-ancestors, and HSTS when the host is https."""
    https = target.base.startswith("https://")
    for path in ("/", "/api/v1/models"):
        problems = _header_problems(target.request("GET", path), https)
        if problems:
            return Result("security_headers", FAIL, f"GET {path}: {'; '.join(problems)}")
    hsts = "HSTS" if https else "HSTS n/a over http"
    return Result("security_headers", PASS, f"CSP, nosniff, frame-ancestors/X-Frame-Options, {hsts} on / and an API")


def _leaks(value: object, where: str) -> list[str]:
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if SENSITIVE_KEY.search(str(key)):
                found.append(f"{where}.{key}")
            found += _leaks(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _leaks(item, f"{where}[{index}]")
    elif isinstance(value, str):
        found += [f"{where}: {what}" for pattern, what in LEAKS if pattern.search(value)]
        if VERSION.search(value) and where not in (f"{path}.version" for path in HEALTH_PATHS):
            found.append(f"{where}: a version number")
    return found


def check_health_leaks(target: Target) -> Result:
    """/health and /health/ready show no URL, host, credential, secret or dependency (nor its version)."""
    found = []
    for path in HEALTH_PATHS:
        response = target.request("GET", path)
        try:
            found += _leaks(response.json(), path)
        except ValueError:
            found.append(f"{path}: {seen(response)}, not JSON")
        for header in ("Server", "X-Powered-By"):
            if VERSIONED_SOFTWARE.search(response.headers.get(header, "")):
                found.append(f"{path} {header}: {response.headers[header]}")
    if found:
        return Result("health_leaks", FAIL, "; ".join(found))
    return Result("health_leaks", PASS, f"{' and '.join(HEALTH_PATHS)}: no URL, host, secret or dependency version")


def check_metrics_closed(target: Target) -> Result:
    """/metrics is 401 without credentials (unless --allow-open-metrics); --metrics-token opens it."""
    response = target.request("GET", "/metrics")
    if response.status_code == 200 and target.allow_open_metrics:
        return Result("metrics_closed", PASS, "200 without credentials (allowed by --allow-open-metrics)")
    if response.status_code != 401:
        return Result("metrics_closed", FAIL, f"GET /metrics without credentials: {seen(response)}")
    if not target.metrics_token:
        return Result("metrics_closed", PASS, "401 without credentials")
    wrong = target.request("GET", "/metrics", headers=bearer(target.metrics_token + "x"))
    right = target.request("GET", "/metrics", headers=bearer(target.metrics_token))
    if wrong.status_code != 401 or right.status_code != 200:
        return Result("metrics_closed", FAIL, f"wrong token: {seen(wrong)}, --metrics-token: {seen(right)}")
    return Result("metrics_closed", PASS, "401 without credentials and with a wrong token, 200 with --metrics-token")


def check_plain_http(target: Target) -> Result:
    """https host: http:// to it is refused or redirected to https. http host: only on loopback."""
    parts = urlsplit(target.base)
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(parts.hostname or "").is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if loopback:
            return Result("plain_http", PASS, "plain http on a loopback host (a local run)")
        return Result("plain_http", FAIL, f"served over plain http on {parts.hostname}: put TLS in front")
    plain = urlunsplit(("http", parts.netloc, "/health", "", ""))
    try:
        response = requests.get(plain, timeout=target.timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return Result("plain_http", PASS, f"{plain}: refused ({type(exc).__name__})")
    location = response.headers.get("Location", "")
    if response.is_redirect and location.startswith("https://"):
        return Result("plain_http", PASS, f"{plain}: {response.status_code} to {location}")
    if 400 <= response.status_code < 500:
        return Result("plain_http", PASS, f"{plain}: refused with {response.status_code}")
    return Result("plain_http", FAIL, f"{plain}: {response.status_code} {location}".rstrip())
