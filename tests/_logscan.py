"""pytest plugin: at the end of the run, search every log the run wrote for every secret it used.

What is searched: the log file of every process the tests started (tests/support.py's
Process reports each one here, with its environment), every `*.log` under the run's
temporary directory, and what pytest captured from the tests themselves (log records,
stdout, stderr), written to `logscan/captured.log` as the run goes.

What is searched for: every value remembered with `remember()` (tokens minted, keys
created, webhook secrets), the value of every secret-looking setting in the
environment of a started process or of this one (`*SECRET*`, `*_KEY`, `*TOKEN*`,
`*PASSWORD*`), and anything shaped like a credential (a signed JWT, `relay_sk_…`,
`whsec_…`), whoever made it. A finding fails the run, naming the file and line.

A directory holding a `.logscan-ignore` file is skipped: the scanner's own test plants
secrets there on purpose.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

IGNORE_MARKER = ".logscan-ignore"
MIN_SECRET_CHARS = 8
SECRET_NAME = re.compile(r"SECRET|_KEY$|^KEY$|TOKEN|PASSWORD|PASSWD")
# Settings named like secrets that are not: they appear in logs by design.
NOT_SECRETS = frozenset({"REDIS_KEY_PREFIX", "MAX_TOKENS_PER_REQUEST", "PLAN_MAX_TOKENS"})
CREDENTIAL_SHAPES = (
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),  # a signed JWT
    re.compile(r"relay_sk_[A-Za-z0-9_-]{20,}"),
    re.compile(r"whsec_[A-Za-z0-9+/=_-]{20,}"),
)

_remembered: set[str] = set()
_process_logs: list[Path] = []


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def remember(secret: str) -> None:
    """Add a secret the run used (a token, a key, a webhook secret) to the end-of-run search."""
    if secret and len(secret) >= MIN_SECRET_CHARS:
        _remembered.add(secret)


def secrets_in_env(env: Mapping[str, str]) -> set[str]:
    """The values of the secret-looking settings of an environment."""
    found = set()
    for name, value in env.items():
        if name in NOT_SECRETS or not SECRET_NAME.search(name) or name.endswith("_FILE"):
            continue
        for part in value.split(","):  # WEBHOOK_SIGNING_SECRET holds several
            if len(part.strip()) >= MIN_SECRET_CHARS:
                found.add(part.strip())
    return found


def track(log_path: Path, env: Mapping[str, str]) -> None:
    """A process was started: search its log at the end, and for the secrets of its environment."""
    _process_logs.append(Path(log_path))
    _remembered.update(secrets_in_env(env))


def _ignored(path: Path) -> bool:
    return any((parent / IGNORE_MARKER).exists() for parent in path.parents)


def log_files(roots: Iterable[Path], extra: Iterable[Path] = ()) -> list[Path]:
    """Every `*.log` under the roots, and the extra files, minus ignored directories."""
    files = {path for root in roots if root.exists() for path in root.rglob("*.log")}
    files.update(path for path in extra if path.exists())
    return sorted(path for path in files if not _ignored(path))


def scan(files: Iterable[Path], secrets: Iterable[str]) -> list[Finding]:
    """Every line of `files` holding one of `secrets` or a credential-shaped string."""
    wanted = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
    findings = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                for secret in wanted:
                    if secret in line:
                        findings.append(Finding(path, number, f"a secret of the run ({secret[:4]}…)"))
                        break
                else:
                    for shape in CREDENTIAL_SHAPES:
                        match = shape.search(line)
                        if match:
                            findings.append(Finding(path, number, f"a credential-shaped string ({match[0][:12]}…)"))
                            break
    return findings


def _captured_path(config: pytest.Config) -> Path:
    directory = config._tmp_path_factory.getbasetemp() / "logscan"  # pytest's own run directory
    directory.mkdir(exist_ok=True)
    return directory / "captured.log"


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):
    """Remember the secrets fixtures hand out: the run's settings and every bearer credential."""
    value = yield
    if fixturedef.argname == "base_env" and isinstance(value, Mapping):
        _remembered.update(secrets_in_env(value))
    elif isinstance(value, Mapping) and isinstance(value.get("Authorization"), str):
        remember(value["Authorization"].partition(" ")[2])
    return value


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep what pytest captured from each test (its log records, stdout and stderr)."""
    sections = [content for _, content in report.sections if content]
    if sections and _captured is not None:
        with open(_captured, "a", encoding="utf-8") as handle:
            # The test's name without its parameters: those are the test's own input (a fake
            # credential in an id), not something a process logged.
            handle.write(f"== {report.nodeid.split('[', 1)[0]} ({report.when})\n")
            handle.writelines(content if content.endswith("\n") else content + "\n" for content in sections)


_captured: Path | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _captured
    _captured = _captured_path(session.config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a log it wrote holds one of its secrets."""
    if _captured is None:
        return
    basetemp = session.config._tmp_path_factory.getbasetemp()
    files = log_files([basetemp], [*_process_logs, _captured])
    findings = scan(files, _remembered | secrets_in_env(os.environ))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if findings:
        if reporter is not None:
            reporter.write_sep("=", "secrets found in the run's logs", red=True)
            for finding in findings[:50]:
                reporter.write_line(str(finding))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None and reporter.verbosity >= 0:
        reporter.write_line(f"log secrets search: {len(files)} logs, {len(_remembered)} secrets, nothing found")
