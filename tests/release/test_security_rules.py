"""Security smells: ruff's flake8-bandit rules (S) pass on app/ and workers/ with the project's
settings, catch planted smells in a copy, and every suppression of one says why."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest

from tests.release.secrets_gate import ROOT, tracked_files
from tests.support import VENV_BIN

SCOPE = ("app", "workers")
PLANTED = '''"""A view with two smells."""

import subprocess

import yaml
from flask import request


def run_it():
    """Shell out on request data."""
    return subprocess.run(request.args["x"], shell=True)


def parse_it():
    """Load YAML that may build any object."""
    return yaml.load(request.get_data())
'''
NOQA = re.compile(r"#\s*noqa:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)(?P<why>[^#]*)")
NOSEC = re.compile(r"#\s*nosec\b(?P<codes>(?:\s*[A-Z][0-9]+\s*,?)*)(?P<why>[^#]*)")
EXPLAINED = re.compile(r"^\s*#\s*(?P<codes>(?:S[0-9]+\s*,\s*)*S[0-9]+):\s*\S")


def security_findings(root, *paths: str) -> list[tuple[str, int, str]]:
    """(file, line, code) of every S-rule finding of ruff, run with root's own settings."""
    result = subprocess.run(
        [str(VENV_BIN / "ruff"), "check", "--no-cache", "--output-format", "json", *paths],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return sorted(
        (str(f["filename"]).removeprefix(f"{root}/"), f["location"]["row"], f["code"])
        for f in json.loads(result.stdout)
        if f["code"] and f["code"].startswith("S")
    )


def unexplained_suppressions(line: str) -> list[str]:
    """The security codes a `# noqa` or `# nosec` on this line silences without saying why."""
    found = []
    for pattern in (NOQA, NOSEC):
        for match in pattern.finditer(line):
            codes = re.findall(r"[A-Z]+[0-9]+", match["codes"]) or ["all"]
            security = [code for code in codes if pattern is NOSEC or code.startswith("S")]
            if security and not match["why"].strip(" -:—"):
                found += security
    return found


def test_security_rules_pass_on_app_and_workers():
    assert security_findings(ROOT, *SCOPE) == []


def test_planted_smells_fail(repo_copy):
    copy = repo_copy(*SCOPE, "pyproject.toml")
    (copy / "app" / "planted.py").write_text(PLANTED)

    assert security_findings(copy, *SCOPE) == [("app/planted.py", 11, "S602"), ("app/planted.py", 16, "S506")]


@pytest.mark.parametrize(
    ("line", "unexplained"),
    [
        ("subprocess.run(argv)  # noqa: S603", ["S603"]),
        ("x = 1  # noqa: S105, E501", ["S105"]),
        ("x = 1  # noqa: E501", []),
        ("subprocess.run(argv)  # noqa: S603 - the venv's own tool, fixed argv", []),
        ("yaml.load(data)  # nosec B506", ["B506"]),
        ("yaml.load(data)  # nosec", ["all"]),
        ("yaml.load(data)  # nosec B506 - a trusted file we ship", []),
    ],
)
def test_a_suppression_must_say_why(line, unexplained):
    assert unexplained_suppressions(line) == unexplained


def test_every_security_suppression_says_why():
    silent = [
        f"{name}:{number}: {codes}"
        for name in tracked_files(ROOT)
        if name.endswith(".py")
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1)
        if (codes := unexplained_suppressions(line))
    ]
    assert silent == []


def test_every_security_rule_turned_off_is_explained():
    text = (ROOT / "pyproject.toml").read_text()
    lint = tomllib.loads(text)["tool"]["ruff"]["lint"]
    assert "S" in lint["select"]
    off = set(lint.get("ignore", [])) | {code for codes in lint.get("per-file-ignores", {}).values() for code in codes}
    explained = {code for line in text.splitlines() if EXPLAINED.match(line) for code in re.findall(r"S[0-9]+", line)}
    assert {code for code in off if code.startswith("S")} - explained == set()
