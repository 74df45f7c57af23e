"""Tenant administration: the audit log and the tenant's usage (queries and responses)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, fields, validate

from .common import FullMatch, QueryInteger

MAX_AUDIT_PAGE = 200
MAX_USAGE_DAYS = 90


class AuditQuerySchema(Schema):
    type = fields.String(validate=FullMatch(r"^[a-z0-9_.]{1,50}$"))
    since = fields.AwareDateTime(default_timezone=UTC)
    until = fields.AwareDateTime(default_timezone=UTC)
    user_id = fields.String(validate=validate.Length(min=1, max=300))
    limit = QueryInteger(load_default=50, validate=validate.Range(min=1, max=MAX_AUDIT_PAGE))
    cursor = fields.String(validate=FullMatch(r"^[0-9]{1,19}$"))


class AuditEventSchema(Schema):
    id = fields.String(required=True, validate=FullMatch(r"^[0-9]{1,19}$"))
    type = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    principal_id = fields.String(required=True, allow_none=True)
    ip = fields.String(required=True, allow_none=True)
    request_id = fields.String(required=True, allow_none=True)
    endpoint = fields.String(required=True, allow_none=True)
    details = fields.Dict(required=True)


class AuditPageSchema(Schema):
    events = fields.List(fields.Nested(AuditEventSchema), required=True)
    count = fields.Integer(required=True, validate=validate.Range(min=0))
    next_cursor = fields.String(required=True, allow_none=True, metadata={"description": "pass as `cursor`"})


class TenantUsageQuerySchema(Schema):
    days = QueryInteger(load_default=30, validate=validate.Range(min=1, max=MAX_USAGE_DAYS))


class UsageRowSchema(Schema):
    day = fields.Date(required=True)
    model = fields.String(required=True)
    requests = fields.Integer(required=True, validate=validate.Range(min=0))
    prompt_tokens = fields.Integer(required=True, validate=validate.Range(min=0))
    completion_tokens = fields.Integer(required=True, validate=validate.Range(min=0))
    spend_usd = fields.Float(required=True, validate=validate.Range(min=0))


class TenantUsageSchema(Schema):
    tenant_id = fields.String(required=True)
    days = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_USAGE_DAYS))
    usage = fields.List(fields.Nested(UsageRowSchema), required=True)


class UsageSchema(Schema):
    """GET /api/v1/usage: the caller's own counts; quotas and budget null where none apply."""

    requests_this_hour = fields.Integer(required=True, validate=validate.Range(min=0))
    hourly_quota = fields.Integer(required=True, allow_none=True)
    lifetime_requests = fields.Integer(required=True, validate=validate.Range(min=0))
    lifetime_quota = fields.Integer(required=True, allow_none=True)
    spend_today_usd = fields.Float(required=True, validate=validate.Range(min=0))
    daily_budget_usd = fields.Float(required=True, allow_none=True)
