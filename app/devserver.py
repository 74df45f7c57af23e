"""`make run`: everything on one machine with embedded defaults.

Makes sure Redis answers (app/provision.py: installed with apt as root when
missing, started privately under instance/ when nothing answers on REDIS_URL),
applies the migrations, then runs every Procfile line with honcho and says
where to go.

    python -m app.devserver
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from . import ROOT, create_app
from .provision import ProvisionError, ensure_redis


def main() -> None:
    app = create_app()
    instance = Path(app.instance_path)
    configured = app.config["REDIS_URL"]
    try:
        redis_url = ensure_redis(configured, instance)
    except ProvisionError as exc:
        sys.exit(str(exc))
    where = urlparse(redis_url)
    print(f"Redis: using {where.hostname}:{where.port or 6379}")

    env = dict(os.environ)
    if redis_url != configured:  # a private redis-server on another port: every process uses it
        env["REDIS_URL"] = redis_url
    metrics_dir = instance / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    env.setdefault("FLASK_APP", "wsgi")

    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True)  # noqa: S603 - the venv's flask, fixed argv

    host, port = app.config["HOST"], app.config["PORT"]
    url = app.config["PUBLIC_URL"] or f"http://{host}:{port}"
    print(
        "\n"
        f"  Relay is starting on {url}\n"
        f"  Chat widget:   {url}/\n"
        f"  Health:        {url}/health/ready\n"
        f"  Try it:        TOKEN=$(curl -s -XPOST {url}/api/v1/anon_session | python3 -c 'import sys,json;print(json.load(sys.stdin)[\"token\"])')\n"
        f'                 curl -N {url}/api/v1/stream -H "Authorization: Bearer $TOKEN" '
        "-H 'Content-Type: application/json' -d '{\"message\":\"Hello!\"}'\n"
        "  Stop with Ctrl-C.\n",
        flush=True,
    )
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    os.chdir(ROOT)
    os.execve(str(bin_dir / "honcho"), [str(bin_dir / "honcho"), "start", "-f", "Procfile"], env)  # noqa: S606 - the venv's honcho, fixed argv


if __name__ == "__main__":
    main()
