"""`make run`: everything on one machine with embedded defaults.

Makes sure Redis answers (starting a private redis-server under instance/ when
nothing listens on the default address), applies the migrations, then runs
every Procfile line with honcho and says where to go.

    python -m app.devserver
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

from . import ROOT, create_app

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis(url: str, instance: Path) -> None:
    """Use REDIS_URL if it answers; otherwise start a private redis-server for loopback URLs."""
    if _ping(url):
        print(f"Redis: using {urlparse(url).hostname}:{urlparse(url).port or 6379}")
        return
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"Redis at {parsed.hostname} does not answer. Check REDIS_URL.")
    server = shutil.which("redis-server")
    if server is None:
        sys.exit(
            "Relay needs Redis and none answers on REDIS_URL. Install it and run `make run` again:\n"
            "  Debian/Ubuntu: sudo apt-get install redis-server\n"
            "  macOS:         brew install redis"
        )
    data = instance / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = str(parsed.port or 6379)
    subprocess.run(  # noqa: S603 - redis-server found by shutil.which, fixed arguments
        [server, "--port", port, "--bind", "127.0.0.1", "--daemonize", "yes", "--dir", str(data),
         "--pidfile", str(data / "redis.pid"), "--logfile", str(data / "redis.log"), "--save", "", "--appendonly", "no"],
        check=True,
    )  # fmt: skip
    for _ in range(50):
        if _ping(url):
            print(f"Redis: started a private redis-server on 127.0.0.1:{port} (files in {data})")
            return
        time.sleep(0.1)
    sys.exit(f"redis-server did not start; see {data / 'redis.log'}")


def main() -> None:
    app = create_app()
    instance = Path(app.instance_path)
    ensure_redis(app.config["REDIS_URL"], instance)

    env = dict(os.environ)
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
