"""Secrets gate: every detect-secrets finding in the tracked files is a reviewed entry of
.secrets.baseline, and a secret planted in a copy of the tree fails the gate."""

from __future__ import annotations

import json
import secrets
import string
import subprocess

from tests.release.secrets_gate import BASELINE, ROOT, gate, load_baseline, unreviewed_entries
from tests.support import VENV_BIN


def _planted() -> tuple[str, str]:
    """A fake AWS key id and a fake password, made now so that no test file holds one."""
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    return key_id, secrets.token_urlsafe(24)


def test_every_baseline_finding_is_reviewed():
    baseline = load_baseline(ROOT)
    assert baseline["results"], "an empty baseline: the scan found nothing, so something is off"
    assert unreviewed_entries(baseline) == []


def test_tracked_files_pass_the_gate(secrets_gate_failures):
    assert secrets_gate_failures == [], "\n".join(
        ["new findings: review each, then `python -m tests.release.secrets_gate update`", *secrets_gate_failures]
    )


def test_a_planted_secret_fails_the_gate(repo_copy):
    copy = repo_copy()
    assert gate(copy, ["tests/conftest.py"]) == []  # its reviewed fixture key passes
    key_id, password = _planted()
    (copy / "app" / "planted.py").write_text(f'AWS_ACCESS_KEY_ID = "{key_id}"\n')
    with (copy / "tests" / "conftest.py").open("a") as conftest:
        conftest.write(f'\nDB_PASSWORD = "{password}"\n')

    failures = gate(copy, ["app/planted.py", "tests/conftest.py"])

    last_line = len((copy / "tests" / "conftest.py").read_text().splitlines())
    assert f"app/planted.py:1: AWS Access Key: not in {BASELINE}" in failures
    assert {line.split(": ")[0] for line in failures} == {"app/planted.py:1", f"tests/conftest.py:{last_line}"}
    assert all(line.endswith(f"not in {BASELINE}") for line in failures)


def test_detect_secrets_hook_with_the_baseline_fails_on_a_plant(repo_copy):
    copy = repo_copy("tests", BASELINE)
    hook = [str(VENV_BIN / "detect-secrets-hook"), "--baseline", BASELINE]
    clean = subprocess.run([*hook, "tests/conftest.py"], cwd=copy, capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (copy / "tests" / "planted.py").write_text(f'AWS_ACCESS_KEY_ID = "{_planted()[0]}"\n')

    planted = subprocess.run([*hook, "tests/planted.py"], cwd=copy, capture_output=True, text=True, check=False)

    assert planted.returncode == 1
    assert "tests/planted.py:1" in planted.stdout and "AWS Access Key" in planted.stdout


def test_an_unreviewed_baseline_entry_fails_the_gate(repo_copy):
    copy = repo_copy("tests", BASELINE)
    baseline = json.loads((copy / BASELINE).read_text())
    entry = baseline["results"]["tests/conftest.py"][0]
    del entry["reason"]
    (copy / BASELINE).write_text(json.dumps(baseline))

    assert gate(copy, []) == [
        f"tests/conftest.py:{entry['line_number']}: Secret Keyword: in {BASELINE} but not reviewed"
        " (is_secret false and a reason)"
    ]
