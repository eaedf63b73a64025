"""Slow clients against the shipped production settings (gunicorn.conf.py): connections that
send their request headers a line at a time and never finish (a "slowloris") do not stall the
server. Threaded workers give each one a thread, not a worker; a connection whose headers have
not all arrived within WEB_HEADER_TIMEOUT seconds is closed, so even more of them than there
are threads hold the server only that long.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from tests.faults.conftest import Server

pytestmark = pytest.mark.faults


class HalfOpen:
    """``count`` connections that send a request line and then one header line a second,
    never the blank line that ends the headers (bounded: at most ``seconds``)."""

    def __init__(self, port: int, count: int, seconds: float = 40) -> None:
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            self.sockets.append(sock)
        self.stop = threading.Event()
        self.until = time.monotonic() + seconds
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.until:
            for sock in self.sockets:
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass  # closed by the server
            self.stop.wait(1)

    def closed_by_server(self) -> int:
        """How many of the connections the server has closed."""
        closed = 0
        for sock in self.sockets:
            sock.settimeout(0.2)
            try:
                closed += sock.recv(1024) == b""
            except ConnectionError:
                closed += 1
            except (TimeoutError, socket.timeout):
                pass
        return closed

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def timed_get(server: Server, path: str = "/login") -> float:
    started = time.monotonic()
    response = requests.get(server.url(path), timeout=30)
    assert response.status_code == 200, response.status_code
    return time.monotonic() - started


def test_several_half_open_connections_do_not_delay_a_normal_request(fault_db, tmp_path):
    """The shipped settings (2 workers here, 16 threads each): 12 slowloris connections, and a
    normal request still answers at once; the server closes the 12 at the header deadline."""
    server = Server(fault_db, tmp_path / "gunicorn.log", config_file=True, env={"WEB_WORKERS": "2"})
    server.start()
    slow = None
    try:
        timed_get(server)  # warm
        slow = HalfOpen(server.port, 12)
        time.sleep(2)
        assert [round(timed_get(server), 1) < 2 for _ in range(5)] == [True] * 5
        session = server.session("a-nurse1")
        started = time.monotonic()
        assert session.get(server.url("/api/v1/unit"), timeout=30).status_code == 200
        assert time.monotonic() - started < 2
        # The default deadline: 10 seconds for the headers.
        deadline = time.monotonic() + 10 + 8
        while slow.closed_by_server() < 12 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert slow.closed_by_server() == 12
    finally:
        if slow is not None:
            slow.close()
        server.stop()


def test_more_half_open_connections_than_threads_hold_the_server_only_until_the_deadline(fault_db, tmp_path):
    """One worker of 4 threads and 8 slowloris connections: every thread is taken, twice over,
    and the header deadline (3 s here) frees them in turn: a normal request waits at most about
    two deadlines (slow connections / threads x deadline), then answers at once again.
    Without the deadline it would wait as long as the slow clients kept sending."""
    server = Server(fault_db, tmp_path / "gunicorn.log", config_file=True,
                    env={"WEB_WORKERS": "1", "WEB_THREADS": "4", "WEB_HEADER_TIMEOUT": "3"})
    server.start()
    slow = None
    try:
        timed_get(server)
        slow = HalfOpen(server.port, 8)
        time.sleep(0.5)
        assert timed_get(server) < 2 * 3 + 3
        assert timed_get(server) < 2
        # The last of them are closed one deadline after a thread took them up: on a loaded
        # machine that may be just after the requests above; wait up to two more deadlines.
        deadline = time.monotonic() + 2 * 3
        while slow.closed_by_server() < 8 and time.monotonic() < deadline:
            time.sleep(0.25)
        assert slow.closed_by_server() == 8
    finally:
        if slow is not None:
            slow.close()
        server.stop()
    assert not server.tracebacks(), server.tracebacks()[:2]
