"""Fault injection for bench/chaos.py and tests/e2e/test_chaos.py: a TCP proxy that can go
down, moto's server in a subprocess, an embedded Postgres that can be restarted for real, and a
thread that SIGKILLs the worker's children at random points.

Why a proxy instead of restarting moto: moto keeps its queues in memory, so restarting it
would wipe every message, which a real SQS never does on a blip. An "endpoint restart" is
modelled as an outage of the path to it: the proxy drops every open connection and refuses
new ones (the port stops listening: ECONNREFUSED) for a few seconds, then listens again.
Everything is on 127.0.0.1 and bounded (connection count, thread count, timeouts).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from shared.runtime.localstack import free_port

_MAX_CONNECTIONS = 128


class TcpProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<upstream_port> (or a Unix socket's path: Postgres's), with
    ``outage(seconds)``, and ``refuse_next``: that many new connections closed unanswered, as a
    server restarting or at max_connections does."""

    def __init__(self, upstream_port: int | str, name: str, refuse_next: int = 0) -> None:
        self.upstream_port = upstream_port
        self.name = name
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._up = threading.Event()
        self._stopped = threading.Event()
        self.refused_during_outage = 0  # connections dropped when the outage began
        self.refuse_next = refuse_next
        self.refused = 0  # connections closed unanswered for refuse_next
        self._accept_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):  # the port can take a moment to come free after the outage
            try:
                sock.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"proxy {self.name}: cannot re-bind port {self.port}")
        sock.listen(64)
        sock.settimeout(0.2)
        self._listener = sock
        self._up.set()
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(sock,), daemon=True,
                                               name=f"proxy-{self.name}")
        self._accept_thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._up.is_set() and not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                full = len(self._conns) >= 2 * _MAX_CONNECTIONS
            if full or not self._up.is_set():
                client.close()
                continue
            if self.refuse_next > 0:
                self.refuse_next -= 1
                self.refused += 1
                client.close()
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream_port, int):
            return socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.settimeout(5)
        try:
            upstream.connect(self.upstream_port)
        except OSError:
            upstream.close()
            raise
        return upstream

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
                with self._lock:
                    self._conns.discard(s)

    def down(self) -> None:
        """Stop listening and drop every open connection."""
        self._up.clear()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=2)
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        self.refused_during_outage += len(conns) // 2
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def up(self) -> None:
        if not self._up.is_set() and not self._stopped.is_set():
            self._listen()

    def outage(self, seconds: float) -> None:
        self.down()
        time.sleep(seconds)
        self.up()

    def stop(self) -> None:
        self._stopped.set()
        self.down()


class MotoServer:
    """moto's server (SQS + S3) in its own process, so its threads never share a GIL with the
    bench's proxies and monitors."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> MotoServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("moto's server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Postgres:
    """The embedded Postgres of the ``pgserver`` wheel, restartable for real: ``restart()`` runs
    ``pg_ctl stop -m fast`` then ``pg_ctl start`` (as pgserver's own system user when we are
    root, as pgserver does), which drops every connection; the data directory survives."""

    def __init__(self, data_dir: Path) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
        self._pgserver = pgserver
        self.server = pgserver.get_server(Path(data_dir), cleanup_mode="stop")

    @property
    def url(self) -> str:
        return self.server.get_uri()

    def restart(self, down_s: float = 0.0) -> float:
        """Stop the server (fast: every connection dropped), keep it down ``down_s`` seconds,
        start it again with the options it ran with; return how long it was unavailable, s."""
        import shlex

        from pgserver._commands import pg_ctl

        # postmaster.opts holds the command line it was started with (socket dir, no TCP);
        # `pg_ctl restart` would reuse it, a stop-then-start has to pass it back.
        argv = shlex.split((self.server.pgdata / "postmaster.opts").read_text())[1:]
        while "-D" in argv:
            at = argv.index("-D")
            del argv[at : at + 2]
        t0 = time.monotonic()
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)
        time.sleep(down_s)
        pg_ctl(["-w", "-l", str(self.server.log), "-o", shlex.join(argv), "start"], pgdata=self.server.pgdata,
               user=self.server.system_user, timeout=60)
        return time.monotonic() - t0

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        # pgserver remembers the postmaster it started; after restart() that one is gone and
        # its cleanup would leave ours running, so stop whatever runs on the data dir first.
        if (self.server.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user,
                       timeout=60)
        self.server.cleanup()


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, pgrp) of a process from /proc, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[2])


def worker_children(worker_pid: int) -> list[int]:
    """The per-message children of a ``docpipe worker``: processes forked by the worker's fork
    server (whose parent is the worker) that lead their own process group (the child runner
    calls setpgid(0, 0); the short-lived ledger helpers and Tesseract do not lead one)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                stats[int(entry)] = st
    direct = {pid for pid, (ppid, _) in stats.items() if ppid == worker_pid}
    return sorted(pid for pid, (ppid, pgrp) in stats.items() if ppid in direct and pgrp == pid)


class ChildKiller(threading.Thread):
    """SIGKILLs about ``fraction`` of the worker's children, each at a random point of its run
    (a delay drawn up to ``max_delay_s`` after it was first seen). A child that ends before its
    delay is replaced by the next new child, so short children do not thin out the share."""

    def __init__(self, worker_pid: int, fraction: float, rng: random.Random, on_kill=None,
                 max_delay_s: float = 1.0) -> None:
        super().__init__(daemon=True, name="child-killer")
        self.worker_pid, self.fraction, self.rng = worker_pid, fraction, rng
        self.on_kill = on_kill
        self.max_delay_s = max_delay_s
        self.seen: set[int] = set()
        self.planned: dict[int, float] = {}
        self.killed: list[int] = []
        self.owed = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            now = time.monotonic()
            for pid in worker_children(self.worker_pid):
                if pid not in self.seen:
                    self.seen.add(pid)
                    if self.owed or self.rng.random() < self.fraction:
                        self.owed = max(0, self.owed - 1)
                        self.planned[pid] = now + self.rng.uniform(0.0, self.max_delay_s)
            for pid, at in list(self.planned.items()):
                if now >= at:
                    del self.planned[pid]
                    st = _stat(pid)
                    if st is None or st[1] != pid:
                        # It finished before its time came (a reused pid is no longer a group
                        # leader): the next new child takes its place, so the share holds.
                        self.owed += 1
                        continue
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        self.killed.append(pid)
                        if self.on_kill:
                            self.on_kill(pid)
            self._halt.wait(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
