"""gunicorn's production settings: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Threaded workers (gthread): a slow or idle client holds one thread, never a whole worker. A
client that opens a connection and sends its request headers slowly (or not at all: a
"slowloris") would still hold its thread for as long as it liked, and enough of them would
stall every worker; so each request must have sent its headers within ``WEB_HEADER_TIMEOUT``
seconds of a thread taking it up, or its connection is closed (``_HeaderDeadline`` below).
Bodies are at most 1 MiB (MAX_CONTENT_LENGTH); a slow body is bounded by a reverse proxy that
buffers requests (docs/DEPLOY.md), as are TLS and the client's address (TRUSTED_PROXIES).

Every value can be changed from the environment (names below) or the command line
(``--bind``, ``--workers``, which win over this file).
"""
from __future__ import annotations

import os
import socket
import threading
import time

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_WORKERS", str(2 * (os.cpu_count() or 1))))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
worker_connections = 1000          # open connections per worker, idle ones included
timeout = 30                       # a worker silent this long is killed and replaced
graceful_timeout = 10              # a stopping worker finishes its requests within this
keepalive = 5                      # seconds an idle kept-alive connection stays open
# Request line and headers: far above anything the app or a browser sends, far below memory trouble.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
HEADER_TIMEOUT = float(os.environ.get("WEB_HEADER_TIMEOUT", "10"))


class _HeaderDeadline:
    """Close a connection whose request line and headers have not all arrived within
    ``seconds`` of a worker thread taking it up (gthread has no such limit of its own: a
    thread reading headers waits for as long as the client keeps sending a byte now and then).

    One watchdog thread per worker; a request whose headers are complete (``pre_request``)
    is off the list, so a slow upload or a long report is never cut by it.
    """

    def __init__(self, worker, seconds: float) -> None:
        self.worker, self.seconds = worker, seconds
        self.lock = threading.Lock()
        self.reading: dict[int, tuple[float, socket.socket]] = {}  # thread -> (deadline, socket)

    def install(self) -> None:
        handle = self.worker.handle

        def handle_within_deadline(conn):
            self.start(conn.sock)
            try:
                return handle(conn)
            finally:
                self.done()

        self.worker.handle = handle_within_deadline
        threading.Thread(target=self.watch, name="header-deadline", daemon=True).start()

    def start(self, sock: socket.socket) -> None:
        with self.lock:
            self.reading[threading.get_ident()] = (time.monotonic() + self.seconds, sock)

    def done(self) -> None:
        with self.lock:
            self.reading.pop(threading.get_ident(), None)

    def watch(self) -> None:
        while True:
            time.sleep(min(0.5, self.seconds / 4))
            now = time.monotonic()
            with self.lock:
                late = [thread for thread, (deadline, _) in self.reading.items() if deadline <= now]
                sockets = [self.reading.pop(thread)[1] for thread in late]
            for sock in sockets:
                try:  # the blocked read returns at once; gunicorn closes the connection
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def post_worker_init(worker) -> None:
    from gunicorn.workers.gthread import ThreadWorker

    if isinstance(worker, ThreadWorker) and HEADER_TIMEOUT > 0:
        worker.header_deadline = _HeaderDeadline(worker, HEADER_TIMEOUT)
        worker.header_deadline.install()


def pre_request(worker, req) -> None:
    deadline = getattr(worker, "header_deadline", None)
    if deadline is not None:
        deadline.done()  # the headers are in: the app has the request now
