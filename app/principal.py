"""Who is calling: the result of authentication, handed to every domain function.

A leaf: it imports nothing from the app, so every layer (db, streams, limits,
auth, workers) may import it without pulling in what authentication needs.
"""

from __future__ import annotations

from dataclasses import dataclass

SCOPES = frozenset({"chat", "actions:preview", "actions:execute", "admin"})
ROLE_SCOPES = {
    "member": frozenset({"chat", "actions:preview", "actions:execute"}),
    "admin": SCOPES,
}
ANONYMOUS_SCOPES = frozenset({"chat"})


@dataclass(frozen=True)
class Principal:
    id: str  # "anon:<sub>", "user:<id>" or "key:<id>": the owner id stored on rows
    kind: str  # anonymous | user | api_key
    subject: str
    tenant_id: str | None
    scopes: frozenset[str]

    @classmethod
    def anonymous(cls, owner_id: str, subject: str) -> Principal:
        """An anonymous principal: no tenant, scope `chat` only."""
        return cls(id=owner_id, kind="anonymous", subject=subject, tenant_id=None, scopes=ANONYMOUS_SCOPES)

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"

    def has_scopes(self, *required: str) -> bool:
        return set(required) <= self.scopes
