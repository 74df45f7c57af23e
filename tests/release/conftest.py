"""Release-gate fixtures: the secrets scan of the whole tree (once per run) and copies to plant smells in."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.release.secrets_gate import ROOT, gate, tracked_files


@pytest.fixture(scope="session")
def secrets_gate_failures() -> list[str]:
    """What the secrets gate reports over every tracked file of this tree (one scan per run)."""
    return gate(ROOT)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Callable[..., Path]:
    """Copy the tracked files (all, or those under the given top-level paths) into a temporary tree,
    staged in a git repository of its own (some tools ask git which files a change touches)."""

    def copy(*tops: str) -> Path:
        target = tmp_path / "repo"
        for name in tracked_files(ROOT):
            if not tops or name.split("/", 1)[0] in tops:
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, target / name)
        for git in (["init", "-q"], ["add", "-A"]):
            subprocess.run(["git", "-C", str(target), *git], check=True, capture_output=True)
        return target

    return copy
