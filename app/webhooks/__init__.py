"""Actions and webhooks: the registry, signed outbound deliveries, the SSRF guard, inbound verification.

- `registry`: a tenant's actions; secrets encrypted at rest (`_crypto`), rotation.
- `deliveries`: `create_delivery` / `enqueue` (for any domain that executes actions),
  the attempt a worker makes under a lease, retries, redelivery, the sweep.
- `client` + `ssrf`: one outbound request to a checked address only.
- `signing`: Standard Webhooks signatures, both ways.
- `inbound`: POST /webhooks/relay.
"""

from __future__ import annotations

from ._crypto import new_secret
from .deliveries import create_delivery, enqueue
from .ssrf import BlockedTarget, set_resolver

__all__ = ["BlockedTarget", "create_delivery", "enqueue", "new_secret", "set_resolver"]
