"""The secrets gate: detect-secrets over the tracked files, against the reviewed baseline.

A finding passes only if `.secrets.baseline` lists it (same file, same detector, same
hashed value: line numbers may move) and a person reviewed it there: `"is_secret": false`
and a `"reason"`. Everything else fails the gate: a new finding, or a listed one nobody
reviewed. The scan uses the plugins and filters the baseline records, as
`detect-secrets-hook --baseline .secrets.baseline` does.

    python -m tests.release.secrets_gate check    # the gate, as the tests run it
    python -m tests.release.secrets_gate update   # rescan; keeps reviews, new findings unreviewed
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect_secrets.core.secrets_collection import SecretsCollection
from detect_secrets.settings import transient_settings

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ".secrets.baseline"


@dataclass(frozen=True)
class Finding:
    """One value a detector flagged: where, which detector, and the value's SHA-1 (never the value)."""

    filename: str
    type: str
    hashed_secret: str
    line_number: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies a finding across edits that move its line."""
        return (self.filename, self.type, self.hashed_secret)

    def __str__(self) -> str:
        return f"{self.filename}:{self.line_number}: {self.type}"


def tracked_files(root: Path) -> list[str]:
    """The files git tracks under root that exist in the working tree (what `detect-secrets scan` reads)."""
    names = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True, text=True
    ).stdout.split("\0")
    return sorted(name for name in names if name and (root / name).is_file())


def load_baseline(root: Path) -> dict[str, Any]:
    """The committed baseline of root, as JSON."""
    return json.loads((root / BASELINE).read_text())


def scan(root: Path, files: list[str], baseline: dict[str, Any]) -> list[Finding]:
    """Run detect-secrets over files (relative to root) with the baseline's plugins and filters."""
    settings = {key: baseline[key] for key in ("plugins_used", "filters_used")}
    with transient_settings(settings):
        collection = SecretsCollection(root=str(root))
        # The baseline's own hashes look like high-entropy strings: it is never scanned. One file
        # at a time in this process: scan_files forks a pool, which can deadlock in a test process
        # that has threads (the fork copies their held locks).
        for name in files:
            if name != BASELINE:
                collection.scan_file(name)
    return sorted(
        (
            Finding(filename, secret.type, secret.secret_hash, secret.line_number or 0)
            for filename, secrets in collection.data.items()
            for secret in secrets
        ),
        key=lambda finding: (finding.filename, finding.line_number, finding.type),
    )


def baseline_entries(baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Every result of the baseline, each with its filename."""
    return [{"filename": name, **entry} for name, entries in baseline["results"].items() for entry in entries]


def unreviewed_entries(baseline: dict[str, Any]) -> list[str]:
    """Baseline results that nobody marked as not a secret with a reason."""
    return [
        f"{entry['filename']}:{entry.get('line_number', 0)}: {entry['type']}"
        for entry in baseline_entries(baseline)
        if entry.get("is_secret") is not False or not str(entry.get("reason", "")).strip()
    ]


def new_findings(findings: list[Finding], baseline: dict[str, Any]) -> list[Finding]:
    """Findings the baseline does not list."""
    known = {(entry["filename"], entry["type"], entry["hashed_secret"]) for entry in baseline_entries(baseline)}
    return [finding for finding in findings if finding.key not in known]


def gate(root: Path, files: list[str] | None = None) -> list[str]:
    """What fails the gate in root (every tracked file unless files is given); empty when it passes."""
    baseline = load_baseline(root)
    findings = scan(root, tracked_files(root) if files is None else files, baseline)
    return [f"{finding}: not in {BASELINE}" for finding in new_findings(findings, baseline)] + [
        f"{entry}: in {BASELINE} but not reviewed (is_secret false and a reason)"
        for entry in unreviewed_entries(baseline)
    ]


def update(root: Path) -> dict[str, Any]:
    """Rescan every tracked file; keep the review of each finding still present, leave new ones unreviewed."""
    baseline = load_baseline(root)
    reviews = {
        (entry["filename"], entry["type"], entry["hashed_secret"]): entry for entry in baseline_entries(baseline)
    }
    results: dict[str, list[dict[str, Any]]] = {}
    for finding in scan(root, tracked_files(root), baseline):
        entry = {
            "type": finding.type,
            "hashed_secret": finding.hashed_secret,
            "is_verified": False,
            "line_number": finding.line_number,
        }
        review = reviews.get(finding.key, {})
        entry.update({key: review[key] for key in ("is_secret", "reason") if key in review})
        results.setdefault(finding.filename, []).append(entry)
    baseline["results"] = results
    baseline.pop("generated_at", None)
    (root / BASELINE).write_text(json.dumps(baseline, indent=2) + "\n")
    return baseline


def main(argv: list[str]) -> int:
    """`check` prints what fails the gate (exit 1 if anything); `update` rewrites the baseline."""
    if argv[1:] == ["check"]:
        failures = gate(ROOT)
        print("\n".join(failures) or "secrets gate: no unreviewed finding")
        return 1 if failures else 0
    if argv[1:] == ["update"]:
        unreviewed = unreviewed_entries(update(ROOT))
        print("\n".join(f"review: {entry}" for entry in unreviewed) or f"{BASELINE}: every finding reviewed")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
