"""The lock: requirements.txt pins every package, transitive ones included, with hashes; it holds
requirements.in's pins; the environment is what it says; installs require the hashes."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata

from tests.release.secrets_gate import ROOT

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")


def normalize(name: str) -> str:
    """A distribution name as PyPI compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(text: str) -> list[str]:
    """The requirement entries of a requirements file, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    entries = (line.split("#")[0].strip() for line in joined.splitlines())
    return [entry for entry in entries if entry]


def locked() -> list[tuple[str, str]]:
    """(normalized name, version) of every package in the lock."""
    return [
        (normalize(match["name"]), match["version"])
        for entry in requirements((ROOT / "requirements.txt").read_text())
        if (match := PIN.match(entry))
    ]


def test_every_entry_is_pinned_and_hashed():
    entries = requirements((ROOT / "requirements.txt").read_text())
    assert len(entries) > 100  # the runtime and tooling, transitive packages included
    assert [entry for entry in entries if not PIN.match(entry) or "--hash=sha256:" not in entry] == []
    assert len(locked()) == len({name for name, _ in locked()}) == len(entries)


def test_the_header_says_where_new_dependencies_go():
    header = (ROOT / "requirements.txt").read_text().splitlines()[0]
    assert "requirements.in" in header and "make lock" in header


def test_the_lock_holds_every_pin_of_requirements_in():
    asked = [PIN.match(entry) for entry in requirements((ROOT / "requirements.in").read_text())]
    assert all(asked), "requirements.in pins every package it names (name==version)"
    lock = dict(locked())
    assert {normalize(m["name"]): m["version"] for m in asked} == {
        normalize(m["name"]): lock.get(normalize(m["name"])) for m in asked
    }
    assert {"pip-tools", "pip-audit", "detect-secrets", "cyclonedx-bom"} <= set(lock)


def test_the_environment_is_the_lock():
    installed = {normalize(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    assert [(name, version, installed.get(name)) for name, version in locked() if installed.get(name) != version] == []


def test_installs_require_the_hashes():
    # -W: as if the lock had changed, so make shows the install step without running it.
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "-W", "requirements.txt", "install"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installs = [line for line in plan.splitlines() if " install " in line and "-r requirements.txt" in line]
    assert installs and all("--require-hashes" in line for line in installs), plan
    llama = [line for line in plan.splitlines() if "download" in line and "--require-hashes" in line]
    assert llama or "portable wheel in" in plan, plan
