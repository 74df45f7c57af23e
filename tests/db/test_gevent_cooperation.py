"""The PostgreSQL driver cooperates with gevent: a slow query in one greenlet does
not stall the others (as in a gunicorn gevent worker, where it would stall every
request and open stream of the process)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import ROOT

SCRIPT = r"""
from gevent import monkey; monkey.patch_all()
import json, sys, time
import gevent
from app.db import Database

database = Database()
database.init(sys.argv[1])
from sqlalchemy import text

ticks = []
def ticker():
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        ticks.append(time.monotonic())
        gevent.sleep(0.05)

def slow_query():
    with database.session() as session:
        session.execute(text("SELECT pg_sleep(1.0)"))

started = time.monotonic()
query = gevent.spawn(slow_query)
clock = gevent.spawn(ticker)
gevent.joinall([query, clock], raise_error=True)
during = [t for t in ticks if started + 0.1 < t < started + 0.9]
print(json.dumps({"ticks_during_query": len(during)}))
"""


def test_slow_postgres_query_does_not_block_other_greenlets(postgres_url):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, postgres_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    ticks = json.loads(result.stdout.strip().splitlines()[-1])["ticks_during_query"]
    # A blocking driver freezes the ticker for the whole second: zero ticks.
    assert ticks >= 8, ticks
