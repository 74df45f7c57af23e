"""Plans: a model proposes actions from a prompt (POST /ai/plan); a person executes them once (POST /ai/execute).

- `proposal`: the plan's JSON Schema per provider, the prompt, and the sieve that keeps only
  registered actions with object payloads (API and workers).
- `handoff`: the worker hands the outcome to the waiting request through Redis (both sides).
- `service`: the API side: admission and budget, the pending row, the wait, execution.
  Import it by name: it loads the limiter, which workers never load.
"""
