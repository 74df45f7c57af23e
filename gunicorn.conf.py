"""gunicorn settings: gevent workers, many open connections each (SSE streams are long-lived)."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "10000"))
timeout = 30  # gevent workers heartbeat from their hub; streams may last far longer
graceful_timeout = 20
keepalive = 5
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
# Access lines omit query strings: nothing secret belongs there, and nothing is logged if it does.
limit_request_line = 8190


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


def post_worker_init(worker):
    import gunicorn.util

    gunicorn.util.write_error = _write_json_error
