"""What `make test` and `make run` need on this machine, found, installed or started.

    python3 app/provision.py programs test|run   before the venv exists: install or name what is missing
    python -m app.provision test -- .venv/bin/pytest ...   Redis, PostgreSQL, Chromium, promtool
    python -m app.provision stop                           stop the private instances under instance/

`make run` uses `ensure_redis` (app/devserver.py).

A missing program is installed with apt when running as root; otherwise the run
stops at once, naming the one command to run. A store that does not answer on
its configured address (RELAY_TEST_REDIS_URL, RELAY_TEST_POSTGRES_URL for the
tests; REDIS_URL for `make run`) is started privately under `instance/`
(redis-server and PostgreSQL's initdb/pg_ctl, on loopback, on the configured
port when it is free, else on another) and the command runs with the URL
pointed at it. Private instances keep running for the next run; `make stop`
ends them. The machine's own services are never touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
TEST_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START_TIMEOUT_S = 30.0
# program -> the Debian package that provides it
PACKAGES = {"redis-server": "redis-server", "initdb": "postgresql", "chromium": "chromium", "promtool": "prometheus"}


class ProvisionError(RuntimeError):
    """Something needed is missing or would not start; the message says what to do."""


def find_program(name: str) -> str | None:
    """A program on the PATH, or PostgreSQL's in Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    return candidates[-1] if candidates else None


def ensure_programs(names: list[str]) -> None:
    """Install the Debian packages of missing programs as root; otherwise stop, naming the command."""
    missing = sorted({PACKAGES[name] for name in names if find_program(name) is None})
    if not missing:
        return
    command = f"apt-get install -y {' '.join(missing)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ProvisionError(f"not installed: {' '.join(missing)}; run `sudo {command}`, then try again")
    print(f"provision: installing {' '.join(missing)} with apt", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = shutil.which("apt-get") or "apt-get"
    subprocess.run([apt, "update", "-qq"], check=True, env=env)  # noqa: S603 - fixed argv
    install = [apt, "install", "-y", "-qq", *missing]  # package names from PACKAGES only
    subprocess.run(install, check=True, env=env, stdout=subprocess.DEVNULL)  # noqa: S603 - package names from PACKAGES


def _listening(url: str) -> bool:
    """Whether anything accepts TCP connections at `url`'s address (standard library only)."""
    parsed = urlparse(url)
    try:
        socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or _DEFAULT_PORTS[parsed.scheme]), 1
        ).close()
    except (OSError, KeyError):
        return False
    return True


_DEFAULT_PORTS = {"redis": 6379, "postgresql+psycopg": 5432, "postgresql": 5432}


def needed_programs(target: str, env: dict[str, str]) -> list[str]:
    """The programs `make <target>` needs: a store's server only when nothing listens on its address."""
    if target == "run":  # a private redis-server serves only a loopback REDIS_URL that nothing answers
        url = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        return [] if _listening(url) or urlparse(url).hostname not in LOOPBACK else ["redis-server"]
    names = ["chromium", "promtool"]
    if not _listening(env.get("RELAY_TEST_REDIS_URL", TEST_REDIS_URL)):
        names.append("redis-server")
    if not _listening(env.get("RELAY_TEST_POSTGRES_URL", TEST_POSTGRES_URL)):
        names.append("initdb")
    return names


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_port(url: str, port: int) -> str:
    parsed = urlparse(url)
    netloc = parsed.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunparse(parsed._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def _wait(check, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise ProvisionError(f"{what} did not start; see {log}")


# -- Redis -------------------------------------------------------------------------------
def redis_answers(url: str) -> bool:
    """Whether a Redis server answers PING at `url`."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis(url: str, instance: Path = INSTANCE, setting: str = "REDIS_URL") -> str:
    """`url` when it answers; else a private redis-server under instance/redis (its URL)."""
    if redis_answers(url):
        return url
    parsed = urlparse(url)
    if parsed.hostname not in LOOPBACK:  # host and port only: the URL may hold a password
        raise ProvisionError(f"{setting}: Redis at {parsed.hostname}:{parsed.port or 6379} does not answer")
    data = instance / "redis"
    port_file = data / "port"
    if port_file.exists() and redis_answers(_with_port(url, int(port_file.read_text()))):
        return _with_port(url, int(port_file.read_text()))  # started by an earlier run
    ensure_programs(["redis-server"])
    data.mkdir(parents=True, exist_ok=True)
    port = parsed.port or 6379
    port = port if _port_free(port) else _free_port()
    log = data / "redis.log"
    subprocess.run(  # noqa: S603 - the located redis-server, fixed arguments
        [find_program("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
         "--dir", str(data), "--pidfile", str(data / "redis.pid"), "--logfile", str(log),
         "--save", "", "--appendonly", "no"],
        check=True,
    )  # fmt: skip
    private = _with_port(url, port)
    _wait(lambda: redis_answers(private), "redis-server", log)
    port_file.write_text(str(port))
    print(f"provision: started a private redis-server on 127.0.0.1:{port} (files in {data})", flush=True)
    return private


# -- PostgreSQL ----------------------------------------------------------------------------
def postgres_answers(url: str) -> bool:
    """Whether PostgreSQL accepts a connection to `url`'s server (any database)."""
    import psycopg

    parsed = urlparse(url.replace("+psycopg", ""))
    try:
        psycopg.connect(urlunparse(parsed._replace(path="/postgres", query="")), connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as Debian's `postgres` user.
    return (
        [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv
    )


def _pg_dir(instance: Path) -> Path:
    directory = instance / "pg"
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
        writable = subprocess.run(_as_postgres(["/usr/bin/test", "-w", str(directory)]), check=False)  # noqa: S603 - fixed argv
        if writable.returncode != 0:
            raise ProvisionError(f"The postgres user cannot write {directory}: make its parent directories readable.")
    return directory


def ensure_postgres(url: str, instance: Path = INSTANCE) -> str:
    """`url` when its server answers; else a private PostgreSQL under instance/pg (its URL)."""
    if postgres_answers(url):
        _create_database(url)
        return url
    parsed = urlparse(url)
    if parsed.hostname not in LOOPBACK:
        raise ProvisionError(
            f"RELAY_TEST_POSTGRES_URL: PostgreSQL at {parsed.hostname}:{parsed.port or 5432} does not answer"
        )
    data = instance / "pg" / "data"
    port_file = instance / "pg" / "port"
    if port_file.exists() and postgres_answers(_with_port(url, int(port_file.read_text()))):
        private = _with_port(url, int(port_file.read_text()))  # started by an earlier run
        _create_database(private)
        return private
    ensure_programs(["initdb"])
    directory = _pg_dir(instance)
    if not (data / "PG_VERSION").exists():
        subprocess.run(  # noqa: S603 - the located initdb, fixed arguments
            _as_postgres([find_program("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    port = parsed.port or 5432
    port = port if _port_free(port) else _free_port()
    log = directory / "postgres.log"
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(  # noqa: S603 - the located pg_ctl, fixed arguments
        _as_postgres([find_program("pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    private = _with_port(url, port)
    _wait(lambda: postgres_answers(private), "PostgreSQL", log)
    port_file.write_text(str(port))
    _create_database(private)
    print(f"provision: started a private PostgreSQL on 127.0.0.1:{port} (files in {directory})", flush=True)
    return private


def _create_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url.replace("+psycopg", ""))
    name = parsed.path.lstrip("/") or "postgres"
    admin = urlunparse(parsed._replace(path="/postgres", query=""))
    with psycopg.connect(admin, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            connection.execute(f'CREATE DATABASE "{name}"')


def stop(instance: Path = INSTANCE) -> list[str]:
    """Stop the private instances under `instance`; returns what was stopped."""
    stopped = []
    data = instance / "pg" / "data"
    if (data / "postmaster.pid").exists() and find_program("pg_ctl"):
        argv = _as_postgres([find_program("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        subprocess.run(argv, check=False)  # noqa: S603 - the located pg_ctl, fixed arguments
        stopped.append("postgresql")
    port_file = instance / "redis" / "port"
    if port_file.exists():
        import redis

        try:
            redis.Redis(port=int(port_file.read_text()), socket_connect_timeout=1).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits (or was not running)
        except redis.RedisError:
            return stopped
        port_file.unlink()
        stopped.append("redis")
    return stopped


def main(argv: list[str]) -> None:
    """`test -- command...` (provision, then run the command with the stores' URLs) or `stop`."""
    action = argv[0] if argv else ""
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    try:
        if action == "stop":
            print("provision: stopped " + (", ".join(stop()) or "nothing"))
            return
        if action == "programs" and argv[1:2] in (["test"], ["run"]):
            ensure_programs(needed_programs(argv[1], dict(os.environ)))
            return
        if action != "test":
            raise ProvisionError("usage: provision.py programs test|run | test -- command... | stop")
        env = dict(os.environ)
        ensure_programs(needed_programs("test", env))
        test_redis = env.get("RELAY_TEST_REDIS_URL", TEST_REDIS_URL)
        env["RELAY_TEST_REDIS_URL"] = ensure_redis(test_redis, INSTANCE, "RELAY_TEST_REDIS_URL")
        env["RELAY_TEST_POSTGRES_URL"] = ensure_postgres(env.get("RELAY_TEST_POSTGRES_URL", TEST_POSTGRES_URL))
    except ProvisionError as exc:
        # The line and status of app/startup.py's refuse(): this file also runs with the system's
        # Python before the venv exists, where the app package cannot be imported.
        print(f"relay: refusing to start: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    if command:
        os.execvpe(command[0], command, env)  # noqa: S606 - the Makefile's own command


if __name__ == "__main__":
    main(sys.argv[1:])
