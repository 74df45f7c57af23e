"""The plan task: ask the model for a plan constrained to the tenant's actions, sort it, store it, settle, hand over."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from celery import shared_task
from flask import current_app

from app import extensions, tokens
from app.catalog import ModelSpec
from app.db import actions as action_queries
from app.db import plans as queries
from app.db.models import utcnow
from app.extensions import database
from app.limits.budget import settle
from app.observability import LLM_COST
from app.plans import handoff
from app.plans.proposal import PlanUnparseable, encoding_for, plan_messages, plan_schema, sort_proposals

from .providers import JsonReply, ProviderError, get_provider

log = logging.getLogger("relay.workers.plan")

PROVIDER_RETRIES = 2  # retries of a 429/5xx, as for a stream before its first chunk
RETRY_BACKOFF_S = 0.5


@dataclass
class _Outcome:
    status: str = "ready"  # ready | failed
    error_code: str | None = None
    message: str = ""
    actions: list | None = None
    rejected: list | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@shared_task(name="workers.plan", ignore_result=True, acks_late=True)
def plan(plan_id: str, max_tokens: int) -> None:
    """Make one plan. Idempotent: the plan is claimed pending -> running once, so a redelivered job does nothing."""
    settings = current_app.config
    with database.session() as session:
        if not queries.move(session, plan_id, "pending", "running"):
            log.info("plan %s already taken or expired; skipping", plan_id)
            return
        row = queries.plan_by_id(session, plan_id)
        actions = [(a.name, a.description) for a in action_queries.all_actions(session, row.tenant_id)]
    spec = current_app.extensions["relay.streams"].catalog.get(row.model)
    if spec is None:  # the API's catalog has it, this worker's not: nothing was sent, nothing to pay
        outcome = _Outcome("failed", "provider_error", "This worker does not serve that model.")
        spec = ModelSpec(row.model, "unknown", row.model, 0.0, 0.0)
    else:
        try:
            outcome = _ask(spec, actions, row.prompt, max_tokens, settings)
        except Exception:  # a bug must still end the plan, never leave the request waiting
            log.exception("plan %s failed", plan_id)
            outcome = _Outcome("failed", "internal", "The plan could not be made.")
    cost = spec.cost(outcome.prompt_tokens, outcome.completion_tokens)
    _store(plan_id, outcome, cost)
    settle(handoff.reservation_id(plan_id), cost)  # the reservation becomes the real cost, on failure too
    if current_app.extensions["relay.streams"].catalog.get(spec.id) is not None:
        LLM_COST.labels(spec.id).inc(cost)
    store = extensions.redis_store
    answer = {"status": outcome.status, "error_code": outcome.error_code, "message": outcome.message}
    handoff.hand_over(store.client, store, plan_id, answer, settings["PLAN_TIMEOUT_SECONDS"])


def _ask(spec: ModelSpec, actions: list[tuple[str, str]], prompt: str, max_tokens: int, settings) -> _Outcome:
    """Call the provider with the plan's schema and sort its answer."""
    encoding = encoding_for(spec.provider)
    messages = plan_messages(actions, prompt, encoding)
    names = [name for name, _ in actions]
    # The prompt is billed once the provider is called, whatever happens next.
    outcome = _Outcome(prompt_tokens=tokens.count_prompt_tokens(spec, messages))
    try:
        reply = _call(spec, messages, plan_schema(names, encoding, settings["PLAN_MAX_ACTIONS"]), max_tokens, settings)
    except ProviderError as exc:
        log.warning("plan: provider error: %s", exc)
        return _failed(outcome, "provider_error", "The model could not be reached; try again.")
    outcome.prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else outcome.prompt_tokens
    outcome.completion_tokens = (
        reply.completion_tokens if reply.completion_tokens is not None else tokens.count_text_tokens(spec, reply.text)
    )
    try:
        outcome.actions, outcome.rejected = sort_proposals(
            reply.text, set(names), encoding, settings["PLAN_MAX_ACTIONS"]
        )
    except PlanUnparseable as exc:
        log.warning("plan: unparseable answer (%s, finish %s)", exc, reply.finish_reason)
        return _failed(outcome, "plan_unparseable", "The model's answer was not a plan; try again.")
    return outcome


def _failed(outcome: _Outcome, code: str, message: str) -> _Outcome:
    outcome.status, outcome.error_code, outcome.message = "failed", code, message
    return outcome


def _call(spec: ModelSpec, messages, schema: dict, max_tokens: int, settings) -> JsonReply:
    provider = get_provider(spec.provider, settings)
    attempt = 0
    while True:
        try:
            return provider.complete_json(spec, messages, schema, max_tokens)
        except ProviderError as exc:
            if not exc.retryable or attempt >= PROVIDER_RETRIES:
                raise
            attempt += 1
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))


def _store(plan_id: str, outcome: _Outcome, cost: float) -> None:
    with database.session() as session:
        queries.move(
            session,
            plan_id,
            "running",
            outcome.status,
            actions=outcome.actions,
            rejected=outcome.rejected,
            error_code=outcome.error_code,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            cost_usd=cost,
            finished_at=utcnow(),
        )
