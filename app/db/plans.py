"""Plans: tenant-scoped lookups and the conditional UPDATEs that move a plan's status exactly once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..errors import not_found
from ..principal import Principal
from .models import Plan

PLAN_STATUSES = ("pending", "running", "ready", "failed", "expired", "executed")


def find_plan(session: Session, principal: Principal, plan_id: str) -> Plan:
    """A plan of the caller's tenant; 404 when unknown or another tenant's."""
    if principal.tenant_id is None:
        raise not_found("plan")
    plan = session.scalar(select(Plan).where(Plan.id == plan_id, Plan.tenant_id == principal.tenant_id))
    if plan is None:
        raise not_found("plan")
    return plan


def plan_by_id(session: Session, plan_id: str) -> Plan | None:
    """Any plan by id: for the worker, which acts on the plan it was given."""
    return session.get(Plan, plan_id)


def move(session: Session, plan_id: str, from_status: str, to_status: str, **values: Any) -> bool:
    """Set the plan's status to `to_status` only if it is still `from_status` (one winner among racers)."""
    statement = (
        update(Plan)
        .where(Plan.id == plan_id, Plan.status == from_status)
        .values(status=to_status, **values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount == 1


def plan_dict(plan: Plan) -> dict[str, Any]:
    """A ready plan as POST /ai/plan answers it."""
    return {
        "plan_id": plan.id,
        "actions": plan.actions or [],
        "rejected": plan.rejected or [],
        "model": plan.model,
        "cost_usd": round(plan.cost_usd or 0.0, 8),
    }
