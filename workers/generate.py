"""The generation task: provider -> journal, then persist and finish the stream."""

from __future__ import annotations

import functools
import logging
import re
import time
from contextlib import closing
from dataclasses import dataclass, field

import redis
from celery import shared_task
from flask import current_app

from app import tokens
from app.catalog import ModelSpec
from app.db import queries
from app.limits.budget import settle as settle_budget
from app.observability import LLM_COST, STREAM_TTFT, STREAMS_TOTAL
from app.redis_store import with_retries
from app.streams import CLAIM_REFUSED, CLAIMED_CANCELLED, REJECTED_CANCELLED, REJECTED_ENDED, StreamRuntime, error_data
from app.streams.job import GenerationJob

from . import coalesce
from .cancel_watch import Cancelled, CancelWatcher
from .liveness import worker_id
from .providers import Delta, ProviderError, get_provider

log = logging.getLogger("relay.workers.generate")

PROVIDER_RETRIES = 2  # retries of a 429/5xx before the first chunk only
RETRY_BACKOFF_S = 0.5
ROW_WAIT_SECONDS = 10.0
REDIS_RETRY_SECONDS = 10.0
# What PostgreSQL's text cannot hold (NUL) and what UTF-8 cannot encode (lone surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass
class _Progress:
    started: float = field(default_factory=time.monotonic)
    first_chunk_at: float | None = None
    parts: list[str] = field(default_factory=list)  # the provider's chunks sent so far
    events: int = 0  # message_chunk events sent so far (a batch of chunks is one)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def elapsed_ms(self, at: float | None) -> int | None:
        return None if at is None else round((at - self.started) * 1000)


@shared_task(name="workers.generate", ignore_result=True, acks_late=True)
def generate(job: dict) -> None:
    """Stream one reply (`job` is a GenerationJob's dict). Idempotent: a stream is claimed once,
    so a redelivered job does nothing."""
    work = GenerationJob.from_dict(job)
    stream_id = work.stream_id
    runtime: StreamRuntime = current_app.extensions["relay.streams"]
    journal = runtime.journal
    claim = _with_redis_retries(lambda: journal.claim(stream_id, worker_id()), "claim", stream_id)
    if claim is None or claim == CLAIM_REFUSED:
        log.info("stream %s already claimed or ended; skipping", stream_id)
        return
    spec = runtime.catalog.get(work.model)
    progress = _Progress()
    if spec is None:  # the API's catalog has it, this worker's not (e.g. a different MODELS_FILE)
        log.error("stream %s: model %r is not in this worker's catalog", stream_id, work.model)
        spec = ModelSpec(work.model, "unknown", work.model, 0.0, 0.0)  # nothing was sent: nothing to pay
        _finish(runtime, stream_id, spec, progress, ("provider_error", "This worker does not serve that model."))
        return
    error = None
    try:
        if claim == CLAIMED_CANCELLED:
            progress.finish_reason = "cancelled"
        else:
            provider = get_provider(spec.provider, runtime.settings)
            # Settled as is when the provider reports no usage (an early stop, a server that omits it).
            progress.prompt_tokens = tokens.count_prompt_tokens(spec, work.messages)
            _run_provider(journal, work, provider, spec, progress, runtime.settings["STREAM_COALESCE_MS"] / 1000)
    except ProviderError as exc:
        log.warning("stream %s: provider error: %s", stream_id, exc)
        error = ("provider_error", str(exc))
    except Exception:  # a bug must still end the stream, never leave the client waiting
        log.exception("stream %s: generation failed", stream_id)
        error = ("internal", "Generation failed.")
    _finish(runtime, stream_id, spec, progress, error)


def _run_provider(journal, job: GenerationJob, provider, spec, progress, window_s: float) -> None:
    attempt = 0
    while True:
        try:
            deltas = provider.stream(spec, job.messages, job.max_tokens, job.sampling)
            # Closed whatever ends the loop (a stop, a kill at shutdown): the provider's response with it.
            with (
                _cancel_watcher(journal).watch(job.stream_id) as watch,
                closing(coalesce.batches(deltas, watch, window_s)) as batches,
            ):
                for batch in batches:
                    if not _take(journal, job, spec, batch, progress):
                        return
            progress.finish_reason = progress.finish_reason or "stop"
            return
        except Cancelled:
            progress.finish_reason = "cancelled"
            return
        except ProviderError as exc:
            if not exc.retryable or progress.parts or attempt >= PROVIDER_RETRIES:
                raise
            attempt += 1
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))


def _take(journal, job: GenerationJob, spec, batch: list[Delta], progress: _Progress) -> bool:
    """Record a batch of deltas as one event (their text joined); False when generation must stop
    (cost cap, length, cancel). Each delta is counted and checked on its own, as it arrived."""
    texts: list[str] = []
    completion = progress.completion_tokens
    stop = None
    for delta in batch:
        if delta.prompt_tokens is not None:
            progress.prompt_tokens = delta.prompt_tokens
        if delta.finish_reason:
            progress.finish_reason = delta.finish_reason
        if not delta.text:
            if delta.completion_tokens is not None:
                completion = delta.completion_tokens
            continue
        # The client and the database must hold the same text, on PostgreSQL too.
        text = _UNSTORABLE.sub("\ufffd", delta.text)
        # Providers that report output tokens only at the end get the tokenizer's count per chunk
        # (a chunk holds one or more tokens): the cap must not be overrun by counting low.
        counted = delta.completion_tokens or completion + max(1, tokens.count_text_tokens(spec, text))
        if spec.cost(progress.prompt_tokens, counted) > job.cost_cap_usd:
            stop = "cost_cap"
            break
        texts.append(text)
        completion = counted
        if len(progress.parts) + len(texts) >= job.max_tokens:  # a provider that ignores max_tokens
            stop = "length"  # (each chunk is a token or more)
            break
    if texts:
        cost = round(spec.cost(progress.prompt_tokens, completion), 8)
        chunk = {"content": "".join(texts), "index": progress.events, "cost_usd": cost}
        if journal.append(job.stream_id, "message_chunk", chunk) in (REJECTED_CANCELLED, REJECTED_ENDED):
            progress.finish_reason = "cancelled"
            return False
        progress.events += 1
        progress.parts += texts
        if progress.first_chunk_at is None:
            progress.first_chunk_at = time.monotonic()
    progress.completion_tokens = completion
    if stop:
        progress.finish_reason = stop
        return False
    return True


def _save(runtime: StreamRuntime, stream_id: str, **reply) -> str | None:
    """Record the reply on the stream's rows, which the API writes while we generate: a very
    short reply can beat them, so a missing row is waited for (LookupError past the wait)."""
    deadline = time.monotonic() + ROW_WAIT_SECONDS
    while True:
        try:
            with runtime.database.session() as session:
                return queries.finish_stream(session, stream_id, **reply)
        except LookupError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.02)


def _finish(
    runtime: StreamRuntime, stream_id: str, spec: ModelSpec, progress: _Progress, error: tuple[str, str] | None = None
) -> None:
    """Persist the reply and usage, then record the terminal event (store, then notify)."""
    cost = spec.cost(progress.prompt_tokens, progress.completion_tokens)
    if runtime.catalog.get(spec.id) is not None:  # labels only from this worker's own table
        LLM_COST.labels(spec.id).inc(cost)
    if progress.first_chunk_at is not None:
        STREAM_TTFT.observe(progress.first_chunk_at - progress.started)
    message_id = None
    try:
        message_id = _save(
            runtime,
            stream_id,
            content=progress.text,
            model=spec.id,
            prompt_tokens=progress.prompt_tokens,
            completion_tokens=progress.completion_tokens,
            cost_usd=cost,
            finish_reason=progress.finish_reason,
            error_code=error[0] if error else None,
        )
    except Exception:  # the client still gets its terminal event
        log.exception("stream %s: could not persist the reply", stream_id)
        error = error or ("internal", "The reply could not be saved.")
    settle_budget(stream_id, cost)  # the reservation becomes the real cost (on error and cancel too)
    STREAMS_TOTAL.labels(error[0] if error else progress.finish_reason).inc()
    if error:
        _append_terminal(runtime, stream_id, "error", error_data(*error))
        return
    _append_terminal(
        runtime,
        stream_id,
        "done",
        {
            "finish_reason": progress.finish_reason,
            "usage": {"prompt_tokens": progress.prompt_tokens, "completion_tokens": progress.completion_tokens},
            "cost_usd": round(cost, 8),
            "ttft_ms": progress.elapsed_ms(progress.first_chunk_at),
            "duration_ms": progress.elapsed_ms(time.monotonic()),
            "message_id": message_id,
        },
    )


def _append_terminal(runtime: StreamRuntime, stream_id: str, event: str, data: dict) -> None:
    """The last event must land: ride out a short Redis outage (a restart) before giving up."""
    _with_redis_retries(lambda: runtime.journal.append(stream_id, event, data), event, stream_id)


def _with_redis_retries(call, what: str, stream_id: str):
    """`call()`, retried through a short Redis outage; None when Redis stays away."""
    try:
        return with_retries(call, REDIS_RETRY_SECONDS)
    except (redis.ConnectionError, redis.TimeoutError):
        log.error("stream %s: Redis unavailable; %s abandoned (its readers time out)", stream_id, what)
        return None


@functools.cache
def _cancel_watcher(journal) -> CancelWatcher:
    """This process's watcher (one polling thread for all its streams)."""
    return CancelWatcher(journal)
