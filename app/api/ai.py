"""Plans: a model proposes actions (POST /ai/plan); executing a plan queues its deliveries (POST /ai/execute)."""

from __future__ import annotations

from flask import Blueprint, current_app

from ..auth import current_principal, require_scopes
from ..limits import limit, tenant_key
from ..plans import service
from ..schemas import json_body, load
from ..schemas.ai import ExecutePlanSchema, PlanExecutedSchema, PlanSchema, plan_request_schema
from ._doc import doc

bp = Blueprint("ai", __name__)
_DELIVERY_LINKS = {
    "read": {"operationId": "actions.read_delivery.get", "parameters": {"delivery_id": "$response.body#/deliveries/0/delivery_id"}},
}  # fmt: skip


@bp.post("/ai/plan")
@doc("Ask the model for a plan of the tenant's registered actions; nothing is executed", {200: PlanSchema},
     body=plan_request_schema, errors=(502, 504),
     description="Admitted and charged like a stream (stream limits, budgets). 422 no_actions when the tenant "
     "has no registered action; 502 provider_error or plan_unparseable; 504 plan_timeout after "
     "PLAN_TIMEOUT_SECONDS (details.plan_id names the plan, which never runs late).")  # fmt: skip
@require_scopes("actions:preview")
@limit("ai_plan", tenant_key)
def plan():
    body = load(plan_request_schema(current_app.config), json_body())
    return service.propose(current_principal(), body["prompt"], body.get("model"))


@bp.post("/ai/execute")
@doc("Execute a ready plan once: one delivery per planned action", {202: PlanExecutedSchema},
     body=ExecutePlanSchema, errors=(404, 409), links={202: _DELIVERY_LINKS},
     description="404: no such plan in this tenant; 409 plan_already_executed, plan_not_ready, plan_failed, "
     "or plan_outdated (an action deleted since the plan was made).")  # fmt: skip
@require_scopes("actions:execute")
@limit("ai_execute", tenant_key)
def execute():
    body = load(ExecutePlanSchema(), json_body())
    return service.execute(current_principal(), body["plan_id"]), 202
