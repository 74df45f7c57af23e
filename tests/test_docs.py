"""The documentation in the repository: every route described, every link inside the repository."""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT

DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
# Where code and docs may point: the repository's own files. Nothing names a contract outside it.
PROCFILE_VARIABLES = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "Procfile").read_text()))
OUTSIDE = re.compile(r"\.\./shared|(?<![\w/])API\.md|DESIGN\.md|STYLE\.md")


def _described(path: str, method: str, text: str) -> bool:
    """`METHOD /a/<x>/b` (or `{x}`) appears, and not as the prefix of a longer path."""
    pattern = re.escape(path)
    pattern = re.sub(r"\\\{[^}]+\\\}", r"(?:<[^>]+>|\\{[^}]+\\})", pattern)
    return re.search(rf"{method.upper()}\s+{pattern}(?![\w/<{{])", text) is not None


def test_every_route_of_openapi_is_described_in_docs_api_md(client):
    spec = client.get("/openapi.json").get_json()
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in sorted(spec["paths"].items())
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"} and not _described(path, method, text)
    ]
    assert len(spec["paths"]) >= 20
    assert missing == [], f"docs/api.md does not describe: {missing}"


def test_the_route_check_fails_for_a_route_the_docs_lack():
    text = "- `GET /api/v1/stream/<stream_id>` resumes\n- `GET /health` → ok"
    assert _described("/api/v1/stream/{stream_id}", "get", text)
    assert not _described("/api/v1/stream/{stream_id}", "delete", text)
    assert not _described("/health/ready", "get", text)
    assert not _described("/api/v1/stream", "get", text), "a prefix of a longer path is not the path"


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve_inside_the_repository(doc):
    path = ROOT / doc
    text = path.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.exists(), f"{doc} links to {target}, which does not exist"
        assert ROOT in resolved.parents or resolved == ROOT, f"{doc} links outside the repository: {target}"


def test_nothing_points_outside_the_repository():
    """Code, tests, docs and settings say docs/api.md (and friends), never a file elsewhere."""
    offenders = []
    for folder in ("app", "workers", "tests", "docs", "deploy", "bench", "migrations"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".md", ".yml", ".yaml", ".json", ".toml"} and path.name != "test_docs.py":
                for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if OUTSIDE.search(line):
                        offenders.append(f"{path.relative_to(ROOT)}:{number}")
    for name in ("README.md", "Makefile", "Procfile", "gunicorn.conf.py", "celery_app.py", ".env.example"):
        if OUTSIDE.search((ROOT / name).read_text()):
            offenders.append(name)
    assert offenders == []


def test_the_readme_starts_with_the_two_commands():
    first = (ROOT / "README.md").read_text().split("\n\n", 1)[0].splitlines()
    assert first[0] == "```sh" and first[1].startswith("make run") and first[2].startswith("make test")


@pytest.mark.parametrize("doc", ["docs/deploy.md", "docs/operations.md"])
def test_the_operator_docs_name_only_settings_that_exist(doc):
    from app.config import SETTINGS_BY_NAME

    text = (ROOT / doc).read_text()
    found = re.findall(r"`([A-Z][A-Z0-9_]{3,})(?:=[^`]*)?`", text)
    named = {name if name in SETTINGS_BY_NAME else name.removesuffix("_FILE") for name in found}
    unknown = {
        name
        for name in named
        if name not in SETTINGS_BY_NAME
        and not name.startswith("RELAY_TEST_")
        and name not in {"PROMETHEUS_MULTIPROC_DIR", "FLASK_APP", "SIGTERM", "SIGKILL", "SIGQUIT", "NAME"}
        and name not in PROCFILE_VARIABLES
    }
    assert unknown == set(), f"{doc} names settings that do not exist: {sorted(unknown)}"
