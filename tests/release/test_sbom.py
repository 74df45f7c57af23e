"""`make sbom` writes a CycloneDX document of the installed environment that lists every locked package."""

from __future__ import annotations

import json
import subprocess

from tests.release.secrets_gate import ROOT
from tests.release.test_lock import locked, normalize


def test_make_sbom_lists_every_locked_package(tmp_path):
    sbom = tmp_path / "sbom.cdx.json"
    # Schema validation takes a minute on this machine: `make sbom` itself keeps it on.
    run = subprocess.run(
        ["make", "--no-print-directory", "-s", "-o", "install", "sbom", f"SBOM={sbom}", "SBOM_VALIDATE=--no-validate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr

    document = json.loads(sbom.read_text())
    assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.6")
    assert document["metadata"]["component"]["name"] == "relay"
    listed = {(normalize(c["name"]), c["version"]) for c in document["components"]}
    assert sorted(set(locked()) - listed) == []
