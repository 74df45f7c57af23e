"""Every module of app/ and workers/ imports alone, in a fresh interpreter: no import cycle hides
behind an import order that happens to work. Workers never load flask-limiter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support import ROOT

PACKAGES = ("app", "workers")


def modules() -> list[str]:
    """Dotted names of every module under app/ and workers/, packages included."""
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def run(code: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONSTARTUP"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


# Run in one fresh interpreter: third-party packages are loaded once, then every module of ours is
# imported in a child forked before any of ours was loaded, so each starts alone and leaves nothing behind.
_HARNESS = """
import importlib, json, os, sys, traceback
for heavy in PRELOAD:
    try:
        importlib.import_module(heavy)
    except Exception:
        pass
assert not [m for m in sys.modules if m.split('.')[0] in ('app', 'workers')]
failures = {}
for name in NAMES:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            os._exit(0)
        except BaseException:
            os.write(write, traceback.format_exc(limit=-3).encode()[-2000:])
            os._exit(1)
    os.close(write)
    with os.fdopen(read, 'rb') as pipe:
        error = pipe.read().decode(errors='replace')
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failures[name] = error or f'exit status {status}'
print(json.dumps(failures))
"""
PRELOAD = (
    "flask",
    "werkzeug",
    "sqlalchemy",
    "alembic",
    "celery",
    "kombu",
    "redis",
    "prometheus_client",
    "jwt",
    "cryptography",
    "marshmallow",
    "apispec",
    "openai",
    "anthropic",
    "httpx",
    "requests",
    "standardwebhooks",
    "flask_cors",
    "flask_migrate",
    "flask_talisman",
)


def import_each_alone(names: list[str]) -> dict[str, str]:
    """name -> error for each module that does not import first in an interpreter with none of ours loaded."""
    code = f"PRELOAD = {PRELOAD!r}\nNAMES = {names!r}\n{_HARNESS}"
    result = run(code)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_walk_finds_the_modules():
    found = modules()
    assert {"app", "app.principal", "app.client_ip", "app.auth._state", "workers.generate"} <= set(found)


def test_every_module_imports_alone():
    failures = import_each_alone(modules())
    assert not failures, "\n\n".join(f"{name}:\n{error}" for name, error in failures.items())


def test_a_cycle_would_be_caught(tmp_path, monkeypatch):
    """The check above can fail: two modules importing names from each other do not import alone."""
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import B\nA = 1\n")
    (package / "b.py").write_text("from .a import A\nB = 2\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    failures = import_each_alone(["cyclic.a", "cyclic.b", "app.principal"])
    assert set(failures) == {"cyclic.a", "cyclic.b"}
    assert "circular import" in failures["cyclic.a"]


def test_the_leaves_import_nothing_of_the_app():
    """app.principal and app.client_ip add only themselves to what the package `app` loads."""
    ours = "json.dumps([m for m in sys.modules if m.split('.')[0] in ('app', 'workers')])"
    package = run(f"import json, sys, app; print({ours})")
    leaves = run(f"import json, sys, app.principal, app.client_ip; print({ours})")
    assert package.returncode == leaves.returncode == 0, package.stderr + leaves.stderr
    assert set(json.loads(leaves.stdout)) - set(json.loads(package.stdout)) == {"app.principal", "app.client_ip"}


def test_workers_never_load_flask_limiter():
    for name in ("workers.generate", "workers.deliver"):
        result = run(f"import sys, {name}; print('flask_limiter' in sys.modules)")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "False", name
