"""Usage read back from the database: one principal's, and a tenant's by day and model.

Only from the streams rows, which outlive their conversations: deleting a
conversation never changes usage or spend."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..principal import Principal
from .models import Stream


def _day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def principal_usage(session: Session, principal: Principal, now: datetime) -> dict[str, Any]:
    """The caller's own streams: this hour, ever, and spend today (UTC)."""
    mine = Stream.owner_id == principal.id
    hour_ago, today = now - timedelta(hours=1), _day_start(now)
    this_hour = session.scalar(select(func.count(Stream.id)).where(mine, Stream.created_at >= hour_ago))
    lifetime = session.scalar(select(func.count(Stream.id)).where(mine))
    spend = session.scalar(select(func.coalesce(func.sum(Stream.cost_usd), 0)).where(mine, Stream.created_at >= today))
    return {"requests_this_hour": this_hour or 0, "lifetime_requests": lifetime or 0, "spend_today_usd": float(spend)}


def usage_summary(session: Session, principal: Principal, settings: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """GET /api/v1/usage: the caller's counts with the quotas and budget that apply to it."""
    usage = principal_usage(session, principal, now)

    def quota(name: str) -> int | None:
        count, _seconds = settings[f"LIMIT_{name}"]
        return (count or None) if principal.is_anonymous else None

    return {
        "requests_this_hour": usage["requests_this_hour"],
        "hourly_quota": quota("ANON_HOURLY"),
        "lifetime_requests": usage["lifetime_requests"],
        "lifetime_quota": quota("ANON_LIFETIME"),
        "spend_today_usd": round(usage["spend_today_usd"], 8),
        # Anonymous traffic shares one budget that is nobody's own: none applies to the caller.
        "daily_budget_usd": settings["TENANT_DAILY_BUDGET_USD"] if principal.tenant_id else None,
    }


def tenant_usage(session: Session, tenant_id: str, since: datetime) -> list[dict[str, Any]]:
    """The tenant's requests, tokens and spend by UTC day and model, newest day first."""
    return usage_by_day(session, since, Stream.tenant_id == tenant_id)


def usage_by_day(session: Session, since: datetime, *where: Any) -> list[dict[str, Any]]:
    """Requests, tokens and spend by UTC day and model, newest day first; no `where`: the whole platform (CLI)."""
    day = func.date(Stream.created_at)
    rows = session.execute(
        select(
            day.label("day"),
            Stream.model,
            func.count(Stream.id),
            func.coalesce(func.sum(Stream.prompt_tokens), 0),
            func.coalesce(func.sum(Stream.completion_tokens), 0),
            func.coalesce(func.sum(Stream.cost_usd), 0),
        )
        .where(Stream.created_at >= since, *where)
        .group_by(day, Stream.model)
        .order_by(day.desc(), Stream.model)
    ).all()
    return [
        {
            "day": str(row[0]),
            "model": row[1],
            "requests": row[2],
            "prompt_tokens": int(row[3]),
            "completion_tokens": int(row[4]),
            "spend_usd": round(float(row[5]), 8),
        }
        for row in rows
    ]
