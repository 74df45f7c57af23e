"""The deployment under test, one check's result, and small helpers the checks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class Result:
    """One check's outcome: PASS, FAIL or SKIP, and what it saw."""

    name: str
    status: str
    detail: str


@dataclass
class Target:
    """The deployment under test and what the checks learn from it as they go."""

    base: str
    token: str | None = None
    metrics_token: str | None = None
    allow_open_metrics: bool = False
    max_requests: int = 300
    timeout: float = 10.0
    verify: bool | str = True
    http: requests.Session = field(default_factory=requests.Session)
    anon_token: str | None = None
    stream_id: str | None = None
    events: list[tuple[int | None, str, dict]] = field(default_factory=list)

    def url(self, path: str) -> str:
        """The absolute URL of `path` on this host."""
        return self.base + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request to the host, redirects not followed."""
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)
        return self.http.request(method, self.url(path), verify=self.verify, **kwargs)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


def error_code(response: requests.Response) -> str | None:
    """The contract's `error.code` of a JSON error answer, if it is one."""
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def seen(response: requests.Response) -> str:
    """The status and error code, as a check line reports them."""
    code = error_code(response)
    return f"{response.status_code}" + (f" {code}" if code else "")
