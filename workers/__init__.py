"""Celery tasks and what only workers need (providers)."""
