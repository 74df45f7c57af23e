"""What OpenAI's structured outputs accept as a strict JSON Schema (the fake enforces it; tests check against it)."""

from __future__ import annotations


def strict_schema_problem(schema: dict, where: str = "schema") -> str | None:
    """What OpenAI's strict mode refuses: an object not closed, or a property not required."""
    if schema.get("type") == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict) or schema.get("additionalProperties") is not False:
            return f"{where}: additionalProperties must be false (and properties given)"
        if sorted(schema.get("required") or []) != sorted(properties):
            return f"{where}: every property must be required"
        for name, sub in properties.items():
            problem = strict_schema_problem(sub, f"{where}.{name}")
            if problem:
                return problem
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return strict_schema_problem(schema["items"], f"{where}[]")
    return None
