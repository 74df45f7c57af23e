"""What worker processes record in Redis about their local model, and how /health/ready reads it.

Each local-model worker process keeps `local_model:<worker id>` (`ok` or `failed`)
with a TTL it renews while alive (workers/liveness.py), and its id in the set
`local_model:workers`. A dead process's record expires with it, so the answer is
about live workers only:
- `failed`: a live local worker could not run the model (or died proving it);
- `ok`: every live local worker that reported ran its one-token generation;
- `none`: no live local worker has reported (none runs, or none finished loading).
"""

from __future__ import annotations

import redis

LOCAL_MODEL_OUTCOMES = ("ok", "failed")


def local_model_index(prefix: str) -> str:
    """The set of worker ids that have recorded a local-model outcome."""
    return f"{prefix}local_model:workers"


def local_model_key(prefix: str, worker_id: str) -> str:
    """One worker process's outcome (`ok` or `failed`), with a TTL."""
    return f"{prefix}local_model:{worker_id}"


def local_model_state(client: redis.Redis, prefix: str) -> str:
    """`failed`, `ok` or `none` for the live local workers (see the module docstring)."""
    index = local_model_index(prefix)
    worker_ids = sorted(client.smembers(index))
    if not worker_ids:
        return "none"
    outcomes = client.mget([local_model_key(prefix, worker_id) for worker_id in worker_ids])
    dead = [worker_id for worker_id, outcome in zip(worker_ids, outcomes, strict=True) if outcome is None]
    if dead:
        client.srem(index, *dead)  # a live worker adds itself back on its next beat
    live = set(outcomes) - {None}
    return "failed" if "failed" in live else "ok" if "ok" in live else "none"
