"""gunicorn settings: gevent workers, many open connections each (SSE streams are long-lived).

Values come from the environment with the defaults of app/config.py (a test compares them);
the app is not imported here, so gevent patches each worker before Flask loads.
On SIGTERM a worker stops accepting, ends every open stream cleanly (the client resumes
with Last-Event-ID on another process; see docs/operations.md) and exits well within
GRACEFUL_TIMEOUT, after which gunicorn kills what is left.
"""

import os
import signal
import weakref

from gunicorn.glogging import Logger

# gunicorn reads this file as the module `__config__`, in its master, before it forks workers
# (tests read the values below with runpy). A refused setting, or a database or Redis that does not
# answer, stops the master here with one line and status 2, rather than workers that fail to boot
# and are booted again. app.startup loads settings only, not the app (see the docstring).
if __name__ == "__config__":
    from app.startup import check_startable, refusing

    with refusing():
        check_startable()

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "10000"))
timeout = 30  # gevent workers heartbeat from their hub; streams may last far longer
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# No access log: the app writes one `relay.request` line per request (request id, principal,
# route, status, latency), redacted like every other line. gunicorn's own lines (start, stop,
# worker events) go through Relay's formatter and redaction too (RelayLogger below).
accesslog = None
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
limit_request_line = 8190


class RelayLogger(Logger):
    """gunicorn's logger with Relay's format (LOG_FORMAT / RELAY_ENV) and redaction on its handlers."""

    def setup(self, cfg):
        super().setup(cfg)
        from app.logs import install, log_format, protect

        settings = {name: os.environ.get(name, "") for name in ("LOG_FORMAT", "RELAY_ENV", "LOG_LEVEL")}
        settings["LOG_LEVEL"] = settings["LOG_LEVEL"] or "INFO"
        install(settings)  # the record factory: every record of this process is scrubbed at birth
        protect(self.error_log.handlers + self.access_log.handlers, log_format(settings))


logger_class = RelayLogger


_in_flight = weakref.WeakSet()  # requests being answered by this worker


def pre_request(worker, req):
    """Remember the request, so that a shutdown can close its connection once it is answered."""
    _in_flight.add(req)


def _drain_streams_on_sigterm(worker):
    """Wrap the worker's SIGTERM handler: besides stopping (gunicorn's part), end every open
    stream cleanly at once, so the worker exits as soon as its short requests are done."""
    stop = worker.handle_exit

    def handle_exit(sig, frame):
        stop(sig, frame)
        import gevent

        gevent.spawn(_drain, worker)  # out of the signal handler: draining takes locks

    signal.signal(signal.SIGTERM, handle_exit)


def _drain(worker):
    from app.streams.hub import drain_all

    for req in list(_in_flight):
        req.must_close = True  # no keep-alive after a drained stream: the connection closes with it
    count = drain_all()
    worker.log.info("SIGTERM: %d open streams told to resume elsewhere", count)


def child_exit(server, worker):
    """Prometheus multiprocess mode: forget the live gauges of a worker that exited."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# gunicorn answers malformed HTTP (a bad request line, headers too large) itself,
# before Flask runs, with an HTML page. Relay's contract is one JSON error shape
# for every error, so each worker swaps in a writer of that shape.
_GUNICORN_CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
                   431: "headers_too_large", 500: "internal", 501: "not_implemented"}  # fmt: skip


def _write_json_error(sock, status_int, reason, mesg):
    import json
    import uuid

    from gunicorn.util import write_nonblock

    request_id = uuid.uuid4().hex
    code = _GUNICORN_CODES.get(status_int, "bad_request")
    body = json.dumps(
        {"error": {"code": code, "message": f"{reason}.", "details": {}, "request_id": request_id}}
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"X-Request-ID: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    write_nonblock(sock, head.encode("latin1") + body)


def _warm_tokenizers(worker):
    """Load the priced models' tokenizers before the first request (admission counts a prompt's
    tokens; o200k_base takes about a second to load). Free models need none."""
    from app.tokens import warm

    runtime = worker.wsgi.extensions["relay.streams"]
    warm(spec for spec in runtime.catalog.models.values() if spec.price_in_per_mtok)


def post_worker_init(worker):
    import gunicorn.util

    gunicorn.util.write_error = _write_json_error
    _drain_streams_on_sigterm(worker)
    _warm_tokenizers(worker)
