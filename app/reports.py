"""Operator reports: `flask relay audit` and `flask relay usage`, platform-wide.

The same filters and queries as `/admin/audit` and `/admin/usage`, without the
tenant scope an API caller has (`--tenant` narrows to one). One line per row on
stdout, or one JSON document with `--json`; counts and the next cursor go to stderr.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from marshmallow import ValidationError

from .api.admin import AuditQuerySchema
from .api.usage import MAX_DAYS
from .db import audit as audit_queries
from .db import usage as usage_queries
from .extensions import database


def _audit_filter(session, args: dict[str, Any]) -> audit_queries.AuditFilter | None:
    """The filter of `/admin/audit`, platform-wide; None when --user-id names no one."""
    principal_ids = ()
    if "user_id" in args:
        principal_ids = audit_queries.principal_ids(session, args["user_id"], args.get("tenant"))
        if not principal_ids:
            return None
    return audit_queries.AuditFilter.from_query(args, principal_ids)


@click.command("audit")
@click.option("--type", "type_", default=None, help="Only events of this type (e.g. auth_failure).")
@click.option("--since", default=None, help="ISO 8601 time (UTC unless it says otherwise).")
@click.option("--until", default=None, help="ISO 8601 time, exclusive.")
@click.option("--user-id", default=None, help="A user id or subject, key:<id>, or anon:<id>.")
@click.option("--tenant", default=None, help="Only this tenant's events.")
@click.option("--limit", default=None, help="Most events to print (1 to 200; default 50).")
@click.option("--cursor", default=None, help="The next cursor a previous page printed.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of lines.")
def audit(as_json: bool, tenant: str | None, type_: str | None, **options: str | None) -> None:
    """Security events across the platform, newest first."""
    raw = {name: value for name, value in {**options, "type": type_}.items() if value is not None}
    try:
        args = AuditQuerySchema().load(raw)
    except ValidationError as exc:
        problems = "; ".join(f"--{name.replace('_', '-')}: {' '.join(text)}" for name, text in exc.messages.items())
        raise click.UsageError(problems) from None
    args["tenant"] = tenant
    with database.session() as session:
        query = _audit_filter(session, args)
        rows = [] if query is None else audit_queries.find_events(session, query, tenant_id=tenant)
        events = [{**audit_queries.event_dict(row), "tenant_id": row.tenant_id} for row in rows[: args["limit"]]]
    next_cursor = events[-1]["id"] if query is not None and len(rows) > query.limit else None
    if as_json:
        click.echo(json.dumps({"events": events, "count": len(events), "next_cursor": next_cursor}, indent=2))
        return
    for event in events:
        details = json.dumps(event["details"], sort_keys=True)
        click.echo(
            f"{event['id']}  {event['created_at']}  {event['type']}  tenant={event['tenant_id']}  "
            f"principal={event['principal_id']}  ip={event['ip']}  endpoint={event['endpoint']}  "
            f"request_id={event['request_id']}  details={details}"
        )
    click.echo(f"{len(events)} event(s)" + (f"; next page: --cursor {next_cursor}" if next_cursor else ""), err=True)


@click.command("usage")
@click.option("--days", type=click.IntRange(1, MAX_DAYS), default=30, show_default=True, help="Days back (UTC).")
@click.option("--tenant", default=None, help="Only this tenant's streams.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of lines.")
def usage(days: int, tenant: str | None, as_json: bool) -> None:
    """Requests, tokens and spend by UTC day and model, across the platform or for one tenant."""
    since = datetime.now(UTC) - timedelta(days=days)
    with database.session() as session:
        if tenant:
            rows = usage_queries.tenant_usage(session, tenant, since)
        else:
            rows = usage_queries.usage_by_day(session, since)
    if as_json:
        click.echo(json.dumps({"tenant_id": tenant, "days": days, "usage": rows}, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['day']}  {row['model']}  requests={row['requests']}  prompt_tokens={row['prompt_tokens']}  "
            f"completion_tokens={row['completion_tokens']}  spend_usd={row['spend_usd']:.6f}"
        )
    total = sum(row["spend_usd"] for row in rows)
    click.echo(f"{sum(row['requests'] for row in rows)} request(s), ${total:.6f} in {days} day(s)", err=True)
