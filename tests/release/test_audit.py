"""`make audit`'s own logic, with a stand-in for pip-audit (the real one needs advisory data from
the internet, which these machines do not reach): what it asks pip-audit, and when it fails."""

from __future__ import annotations

import re
import subprocess
from datetime import date
from pathlib import Path

import pytest

from tests.release.secrets_gate import ROOT
from tests.release.test_lock import locked

STAND_IN = """#!/bin/sh
printf '%s\\n' "$@" > "$AUDIT_ARGV"
cat "$AUDIT_REPORT"
exit "$AUDIT_EXIT"
"""
CLEAN = "No known vulnerabilities found\n"
SKIPPED = """Name    Skip Reason
------- --------------------------------------------------------------
alembic Dependency not found on PyPI and could not be audited: alembic (1.20.1)
"""
FOUND = """Name  Version ID                  Fix Versions Description
----- ------- ------------------- ------------ -----------
flask 3.1.3   GHSA-aaaa-bbbb-cccc 3.1.4        A made-up advisory.
"""
ENTRY = re.compile(r"^(?P<id>\S+)\s+(?P<day>\d{4}-\d{2}-\d{2})\s+(?P<package>\S+)\s+(?P<reason>\S.*)$")


def make_audit(tmp_path: Path, ignore: str, report: str, status: int) -> tuple[subprocess.CompletedProcess, Path]:
    """Run `make audit` (without its install step) with the stand-in; return the run and its argv file."""
    stand_in = tmp_path / "pip-audit"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    (tmp_path / "ignore").write_text(ignore)
    (tmp_path / "report").write_text(report)
    argv = tmp_path / "argv"
    run = subprocess.run(
        ["make", "--no-print-directory", "-s", "-o", "install", "audit", f"PIP_AUDIT={stand_in}",
         f"AUDIT_IGNORE={tmp_path / 'ignore'}"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "AUDIT_ARGV": str(argv), "AUDIT_REPORT": str(tmp_path / "report"),
             "AUDIT_EXIT": str(status), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    return run, argv


def test_audits_the_hashed_lock_without_pip_and_passes_the_ignore_list(tmp_path):
    ignore = "# reviewed\nGHSA-1111-2222-3333  2026-11-30  flask  not reachable: Relay never calls it\n\n"

    run, argv = make_audit(tmp_path, ignore, CLEAN, 0)

    assert run.returncode == 0, run.stdout + run.stderr
    assert argv.read_text().split("\n")[:7] == [
        "--require-hashes", "--disable-pip", "-r", "requirements.txt", "--progress-spinner", "off", "--desc",
    ]  # fmt: skip
    assert "--ignore-vuln\nGHSA-1111-2222-3333\n" in argv.read_text()


@pytest.mark.parametrize(
    ("report", "status", "says"),
    [(FOUND, 1, "GHSA-aaaa-bbbb-cccc"), (SKIPPED, 0, "1 packages could not be audited (listed above)")],
    ids=["a vulnerability", "a package not audited"],
)
def test_fails_on_a_finding_and_on_a_package_it_could_not_audit(tmp_path, report, status, says):
    run, _ = make_audit(tmp_path, "", report, status)

    assert run.returncode != 0
    assert says in run.stdout
    assert report.splitlines()[2] in run.stdout  # the report is shown, not hidden


@pytest.mark.parametrize("entry", ["GHSA-1111-2222-3333", "GHSA-1111-2222-3333 flask no date here"])
def test_an_ignore_entry_without_a_date_and_a_reason_stops_it_before_pip_audit(tmp_path, entry):
    run, argv = make_audit(tmp_path, entry + "\n", CLEAN, 0)

    assert run.returncode != 0
    assert "want: ID YYYY-MM-DD package reason" in run.stdout
    assert not argv.exists()


def test_the_ignore_list_is_dated_reasoned_and_names_locked_packages():
    packages = {name for name, _ in locked()}
    for line in (ROOT / ".pip-audit-ignore").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            entry = ENTRY.match(line)
            assert entry, line
            assert date.fromisoformat(entry["day"]) <= date.today(), line
            assert entry["package"].lower() in packages, line
