"""`flask relay validate`: check a live deployment the way an attacker and an operator would.

Each check is a plain function of a `Target` (the host, the options, one
`requests` session, and what earlier checks learned) that returns a `Result`:
pass, fail or skip, with what it saw. It only speaks HTTP to the host, so it
knows no server secret: the "expired token" is signed with a random key.

/metrics: the validator cannot read the server's settings, so it expects
/metrics to be closed (401 without credentials) unless `--allow-open-metrics`
says this deployment serves it open on purpose (a private network only);
with `--metrics-token` it also checks that the token opens it.
Plain http: for an https host the same host is tried over http and must be
refused or redirected to https; an http host passes only on a loopback
address (a local run), never on a public one.
The 429 check hammers GET /api/v1/usage with `--token` (a test principal:
it exhausts that caller's limits) at most `max_requests` times; it runs last.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import click
import requests

from ._auth import check_anon_token, check_auth_required, check_expired_token, check_invalid_token
from ._stream import check_message_too_long, check_resume, check_stream_done, check_unknown_model
from ._surface import (
    check_cors,
    check_health_leaks,
    check_metrics_closed,
    check_plain_http,
    check_rate_limit_headers,
    check_retry_after,
    check_security_headers,
)
from ._target import FAIL, PASS, SKIP, Result, Target

__all__ = ["CHECKS", "FAIL", "PASS", "SKIP", "Result", "Target", "run_checks", "summary", "validate"]

# In this order: later checks use what earlier ones learned (the anonymous token, the stream),
# and the one that exhausts a limit runs last.
CHECKS: tuple[Callable[[Target], Result], ...] = (
    check_auth_required,
    check_anon_token,
    check_stream_done,
    check_resume,
    check_invalid_token,
    check_expired_token,
    check_message_too_long,
    check_unknown_model,
    check_cors,
    check_security_headers,
    check_health_leaks,
    check_metrics_closed,
    check_plain_http,
    check_rate_limit_headers,
    check_retry_after,
)


def _name(check: Callable[[Target], Result]) -> str:
    return check.__name__.removeprefix("check_")


def run_checks(target: Target) -> list[Result]:
    """Every check in order; a check that cannot reach the host fails with what went wrong."""
    results = []
    for check in CHECKS:
        try:
            results.append(check(target))
        except (requests.RequestException, TimeoutError, ValueError) as exc:
            results.append(Result(_name(check), FAIL, f"{type(exc).__name__}: {exc}"))
    return results


def summary(host: str, results: list[Result]) -> dict:
    """The machine-readable outcome (`--json`)."""
    counted = [result for result in results if result.status != SKIP]
    passed = sum(result.status == PASS for result in counted)
    return {
        "host": host,
        "ok": passed == len(counted),
        "passed": passed,
        "total": len(counted),
        "checks": [{"name": r.name, "status": r.status, "detail": r.detail} for r in results],
    }


@click.command("validate")
@click.option("--host", required=True, help="The deployment's base URL, e.g. https://relay.example.com.")
@click.option("--token", default=None, help="A test principal's credential: enables the 429/Retry-After check.")
@click.option("--metrics-token", default=None, help="METRICS_TOKEN: also check that it opens /metrics.")
@click.option("--allow-open-metrics", is_flag=True, help="/metrics is open on purpose (private network only).")
@click.option("--max-requests", type=click.IntRange(1, 10_000), default=300, show_default=True,
              help="Most requests the 429 check sends.")  # fmt: skip
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False), default=None, help="CA file for TLS.")
@click.option("--timeout", type=click.FloatRange(0.5, 120), default=10.0, show_default=True, help="Seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def validate(
    host: str,
    token: str | None,
    metrics_token: str | None,
    allow_open_metrics: bool,
    max_requests: int,
    ca_bundle: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Check a live deployment; one line per check, then `Passed: N/M`; exit 0 only when all pass."""
    base = host.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise click.BadParameter("an http:// or https:// URL", param_hint="--host")
    target = Target(base, token, metrics_token, allow_open_metrics, max_requests, timeout, verify=ca_bundle or True)
    results = run_checks(target)
    outcome = summary(base, results)
    if as_json:
        click.echo(json.dumps(outcome, indent=2))
    else:
        for result in results:
            click.echo(f"{result.status.upper():4}  {result.name:<18} {result.detail}")
        click.echo(f"Passed: {outcome['passed']}/{outcome['total']}")
    if not outcome["ok"]:
        raise SystemExit(1)
