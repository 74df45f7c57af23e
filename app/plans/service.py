"""POST /ai/plan and POST /ai/execute: propose a plan on a worker and wait for it; execute a plan once.

A plan is admitted like a stream (`admit_stream`: the stream limits and the
budget reservation in one step, under the reservation id `plan:<id>`) with a
cost cap of DEFAULT_COST_CAP_USD that max_tokens is cut to fit, so the worker's
settlement never exceeds what was reserved. The worker settles the real cost;
a plan no worker took before PLAN_TIMEOUT_SECONDS is marked expired by the
request (one conditional UPDATE, so the worker and the request cannot both win)
and its reservation released: it never runs late and never charges.
"""

from __future__ import annotations

import math
from typing import Any

from flask import current_app
from kombu.exceptions import OperationalError as BrokerError

from .. import extensions
from ..catalog import Catalog, ModelSpec
from ..db import actions as action_queries
from ..db import plans as queries
from ..db.models import Plan, new_id, utcnow
from ..errors import APIError, validation_error
from ..extensions import database
from ..limits import admit_stream
from ..principal import Principal
from ..tokens import count_prompt_tokens
from ..webhooks import create_delivery, enqueue
from . import handoff
from .proposal import encoding_for, plan_messages

TASK = "workers.plan"


def _queue_for(spec: ModelSpec) -> str:
    # The CPU-bound local model has its own queue and prefork workers, as for streams.
    return "generate_local" if spec.provider == "local" else "generate"


def _max_tokens(spec: ModelSpec, messages: list[dict[str, str]], config: Any) -> int:
    """PLAN_MAX_TOKENS, cut so the prompt and the whole answer stay within DEFAULT_COST_CAP_USD."""
    limit = config["PLAN_MAX_TOKENS"]
    if not spec.price_out_per_mtok:
        return limit
    cap = config["DEFAULT_COST_CAP_USD"]
    prompt_usd = spec.cost(count_prompt_tokens(spec, messages), 0) if spec.price_in_per_mtok else 0.0
    affordable = math.floor((cap - prompt_usd) * 1_000_000 / spec.price_out_per_mtok)
    if affordable < 1:
        raise validation_error({"prompt": ["Too long: its cost alone exceeds the plan's cost cap."]})
    return min(limit, affordable)


def propose(principal: Principal, prompt: str, model: str | None) -> dict[str, Any]:
    """Admit, store a pending plan, have a worker ask the model, and wait for the outcome."""
    config = current_app.config
    catalog: Catalog = current_app.extensions["relay.streams"].catalog
    spec = catalog.get(model or catalog.default)
    if spec is None:
        raise validation_error({"model": ["Not an available model."]}, "Unknown model.")
    with database.session() as session:
        actions = [(a.name, a.description) for a in action_queries.tenant_actions(session, principal)]
    if not actions:
        raise APIError(422, "no_actions", "This tenant has no registered action to plan with; register one first.")
    messages = plan_messages(actions, prompt, encoding_for(spec.provider))
    max_tokens = _max_tokens(spec, messages, config)
    plan_id = new_id()
    admission = admit_stream(
        principal, spec, handoff.reservation_id(plan_id), messages, max_tokens, config["DEFAULT_COST_CAP_USD"]
    )
    timeout = config["PLAN_TIMEOUT_SECONDS"]
    try:
        with database.session() as session:
            session.add(Plan(id=plan_id, tenant_id=principal.tenant_id, created_by=principal.id, prompt=prompt,
                             model=spec.id, status="pending", created_at=utcnow()))  # fmt: skip
        current_app.extensions["celery"].send_task(
            TASK, kwargs={"plan_id": plan_id, "max_tokens": max_tokens}, queue=_queue_for(spec), expires=timeout
        )
    except BrokerError:
        _give_up(plan_id, admission.release)
        raise
    except BaseException:
        admission.release()
        raise
    store = extensions.redis_store
    outcome = handoff.wait_for(store.client, store, plan_id, timeout)
    if outcome is None:
        _give_up(plan_id, admission.release)
        raise APIError(504, "plan_timeout", f"No plan within {timeout:g} seconds.", {"plan_id": plan_id})
    if outcome["status"] != "ready":
        raise APIError(502, outcome["error_code"], outcome["message"], {"plan_id": plan_id})
    with database.session() as session:
        return queries.plan_dict(queries.find_plan(session, principal, plan_id))


def _give_up(plan_id: str, release: Any) -> None:
    """Expire a plan no worker has taken; its reservation is released only then (a worker that
    took it settles the reservation itself)."""
    with database.session() as session:
        expired = queries.move(session, plan_id, "pending", "expired", finished_at=utcnow())
    if expired:
        release()


def execute(principal: Principal, plan_id: str) -> dict[str, Any]:
    """One delivery per planned action, once: the conditional UPDATE ready -> executed lets one request win."""
    with database.session() as session:
        plan = queries.find_plan(session, principal, plan_id)
        if plan.status != "ready" or not queries.move(session, plan.id, "ready", "executed", executed_at=utcnow()):
            raise _not_executable(plan.status)
        made = []
        for item in plan.actions or []:
            try:
                delivery = create_delivery(session, principal, item["action"], item["payload"], plan_id=plan.id)
            except APIError as exc:
                if exc.code != 404:
                    raise
                # The action was deleted since the plan was made: nothing is sent (the UPDATE rolls back too).
                message = f"The action {item['action']!r} no longer exists; make a new plan."
                raise APIError(409, "plan_outdated", message, {"action": item["action"]}) from None
            made.append({"delivery_id": delivery.id, "action": delivery.action_name, "status": delivery.status})
    enqueue([item["delivery_id"] for item in made])
    return {"plan_id": plan_id, "deliveries": made, "count": len(made)}


def _not_executable(status: str) -> APIError:
    if status in ("executed", "ready"):  # ready: another request executed it a moment ago
        return APIError(409, "plan_already_executed", "This plan was already executed.")
    if status == "failed":
        return APIError(409, "plan_failed", "This plan failed; make a new one.")
    return APIError(409, "plan_not_ready", f"This plan is {status}; only a ready plan can be executed.")
