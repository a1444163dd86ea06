"""The local stack, started by the code, no Docker: moto's server for SQS and S3 on loopback
and an embedded PostgreSQL 16 from the ``pgserver`` wheel, its data under ``data_dir``.

``docpipe local up`` runs it in the foreground and prints the environment to export;
``docpipe process`` starts it in-process and stops it when done. Users with Docker can use
docker-compose.yml (ElasticMQ) instead; the adapters cannot tell the difference.

Postgres starts in a thread of its own (``start_database``): on a new data dir its initdb is
the longest part of the start (0.6-4 s, ~0.8 s of CPU), and needs nothing else, so the
caller's imports, moto's (~0.5 s of CPU) and whatever else it does meanwhile overlap it;
``database_url`` waits for it. It runs once per machine and Postgres build: a new data dir is
a copy of the empty cluster the first initdb made (``_template``: ~0.1 s, under the user's
cache dir; no rows, no schema), the way test suites keep a template database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "docpipe-local", "AWS_SECRET_ACCESS_KEY": "docpipe-local"}


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalStack:
    def __init__(self, data_dir: Path, port: int | None = None, storage: str = "local", postgres: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.storage = storage
        self.postgres = postgres
        self._moto = None
        self._pg = None
        self._pg_thread: threading.Thread | None = None
        self._pg_error: BaseException | None = None
        self._checkpoint_thread: threading.Thread | None = None

    def start(self, wait: bool = True) -> LocalStack:
        """Start Postgres (unless ``start_database`` did) and moto's server (unless an earlier
        ``start`` did); with ``wait``, return once both serve, else once moto does
        (``database_url`` then waits for Postgres)."""
        self.start_database()
        if self._moto is None:
            from moto.server import ThreadedMotoServer

            # werkzeug logs every request line; the stack's own output is the env it prints.
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self.port = self.port or free_port()
            self._moto = _moto_server(ThreadedMotoServer, ip_address="127.0.0.1", port=self.port, verbose=False)
            self._moto.start()
        if wait:
            self.wait_database()
        return self

    def start_database(self) -> None:
        """Begin starting Postgres (initdb on a new data dir, then the server) in a thread, once."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.postgres or self._pg_thread is not None:
            return
        self._pg_thread = threading.Thread(target=self._start_postgres, name="docpipe-postgres-start", daemon=True)
        self._pg_thread.start()

    def _start_postgres(self) -> None:
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
                warnings.simplefilter("ignore")
                import pgserver

            pgdata = self.data_dir / "pg"
            copied = not (pgdata / "PG_VERSION").exists() and _copy_template(pgdata)
            try:
                self._pg = pgserver.get_server(pgdata, cleanup_mode="stop")
            except Exception:
                if not copied:
                    raise
                # A template that does not start (damaged in the cache): initdb as without one.
                _logger.warning("the cached empty cluster did not start; initdb instead", exc_info=True)
                shutil.rmtree(_template(), ignore_errors=True)
                shutil.rmtree(pgdata, ignore_errors=True)
                # pgserver keeps the instance that failed by its path: a new one for the initdb
                getattr(pgserver.PostgresServer, "_instances", {}).pop(pgdata.resolve(), None)
                self._pg = pgserver.get_server(pgdata, cleanup_mode="stop")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._pg_error = exc

    def wait_database(self) -> None:
        """Block until Postgres serves; raise what stopped it from starting."""
        if self._pg_thread is not None:
            self._pg_thread.join()
        if self._pg_error is not None:
            raise self._pg_error

    def checkpoint_soon(self) -> threading.Thread | None:
        """Have Postgres write what it holds to disk now, in a thread, while the caller goes on.

        Postgres's stop ends with a checkpoint that writes, and syncs file by file, whatever
        changed since the last one: on a new data dir, every table, index and catalog the
        migrations made (121 files, 0.40 s of the 0.45 s checkpoint after a 142-page scan, the
        last thing ``docpipe process`` waits for). Checkpointed once they are made, they are
        on disk long before the stop, whose checkpoint then has the run's own rows only.
        Best effort: a checkpoint that fails leaves the stop's to do it all, as before. Returns
        the thread (None without a database), for a caller that waits; ``stop`` waits for it."""
        if self._pg is None:
            return None
        if self._checkpoint_thread is None or not self._checkpoint_thread.is_alive():
            self._checkpoint_thread = threading.Thread(
                target=_checkpoint, args=(self._pg.get_uri(),), name="docpipe-postgres-checkpoint", daemon=True
            )
            self._checkpoint_thread.start()
        return self._checkpoint_thread

    def stop(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._checkpoint_thread is not None:
            self._checkpoint_thread.join()  # its connection closed before Postgres is asked to stop
            self._checkpoint_thread = None
        if self._pg_thread is not None:
            self._pg_thread.join()  # a start under way finishes, so that what it started is stopped
            self._pg_thread = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        self.wait_database()
        return self._pg.get_uri()

    def env(self, database: bool = True) -> dict[str, str]:
        """The environment that points docpipe (and boto3) at this stack; without ``database``,
        all of it that is known before the stack starts (its port given)."""
        return {
            **({"DATABASE_URL": self.database_url} if database else {}),
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            **LOCAL_CREDENTIALS,
            "STORAGE_BACKEND": self.storage,
            "STORAGE_BUCKET": "docpipe",
            "LOCAL_STORAGE_DIR": str(self.data_dir / "storage"),
            "QUEUE_PREFIX": "docpipe",
        }


_logger = logging.getLogger(__name__)


def _template() -> Path:
    """Where this Postgres build's empty cluster is kept: the user's cache dir
    (``$XDG_CACHE_HOME``, else ~/.cache), by pgserver's version and binaries."""
    import hashlib
    from importlib.metadata import version

    from pgserver._commands import POSTGRES_BIN_PATH

    key = hashlib.sha256(f"{version('pgserver')}:{POSTGRES_BIN_PATH.resolve()}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "docpipe" / f"pgdata-{key}"


def _copy_template(pgdata: Path) -> bool:
    """Make ``pgdata`` (new) a copy of the empty cluster kept for this Postgres build, made
    first if there is none (initdb, then a clean stop: what a new data dir gets anyway).
    Best effort: False (and no ``pgdata``) when it cannot, for an initdb as before."""
    template = _template()
    try:
        if not (template / "PG_VERSION").exists():
            _make_template(template)
        _copy_tree(template, pgdata)
        return True
    except Exception:  # a cache: without it, initdb as before
        _logger.warning("no cached empty cluster; initdb instead", exc_info=True)
        shutil.rmtree(pgdata, ignore_errors=True)
        return False


def _make_template(template: Path) -> None:
    """initdb into a directory beside ``template`` and rename it into place once stopped, so
    that another process never copies half a cluster; of two at once, the first rename wins."""
    import pgserver

    template.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{template.name}.", dir=template.parent))
    try:
        pgserver.get_server(scratch / "pg", cleanup_mode="stop").cleanup()  # initdb, start, clean stop
        with contextlib.suppress(OSError):  # the other one's is in place: the same cluster
            (scratch / "pg").rename(template)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _copy_tree(source: Path, target: Path) -> None:
    """``source`` copied to ``target`` by ``cp -a``: modes and, run as root (pgserver then runs
    Postgres as its own user), owners, so that the server reads the copy as it read the
    original; in its own process, ~0.1 s (a copy in Python holds the GIL that the caller's
    imports and moto's start want meanwhile). Not the server's log and last command line, which
    name the directory the cluster was made in, nor pgserver's list of the processes using it."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True, capture_output=True)
    for name in ("log", "postmaster.opts", ".handle_pids.json"):
        (target / name).unlink(missing_ok=True)


def _checkpoint(uri: str) -> None:
    import psycopg

    try:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("checkpoint")
    except psycopg.Error as exc:
        from shared.observability import logger

        logger.warning("checkpoint failed", extra={"error": type(exc).__name__})


def _moto_server(base, **kwargs):
    """moto's threaded server, less two of its costs, which the worker's parent pays (moto runs
    in its process) for every request and every idle second:
    - moto's dispatcher lists moto's package directory, and stats each entry, twice a request
      to tell a service from a host (about a third of the server's CPU a request): here the
      list is read once (it is the installed package; it does not change while we run), and
      the backend found for a host is kept;
    - the serving loop wakes every 0.5 s (socketserver's default) instead of every 20 ms, and
      ``stop`` wakes it with a connection, so that stopping still takes milliseconds, not up
      to the interval."""
    from moto.backends import list_of_moto_modules
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    modules = frozenset(list_of_moto_modules())

    class Dispatcher(DomainDispatcherApplication):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._backend_of_host: dict = {}

        def get_backend_for_host(self, host):
            # A request's host is 127.0.0.1, then the service's AWS host moto infers from its
            # signature, never a module's name: moto's own answer, which lists its modules
            # first, is kept for each host (the answer for a host does not change while we run).
            if host in self._backend_of_host:
                return self._backend_of_host[host]
            backend = host if host is not None and host in modules else super().get_backend_for_host(host)
            self._backend_of_host[host] = backend
            return backend

    class MotoServer(base):
        def _server_entry(self) -> None:
            from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
            from werkzeug.serving import make_server

            app = Dispatcher(create_backend_app)
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever(poll_interval=0.5)

        def stop(self) -> None:
            self._server_ready_event.clear()
            if self._server:
                # shutdown() asks the loop to end and waits for it; a connection ends its wait.
                stopper = threading.Thread(target=self._server.shutdown, name="docpipe-moto-stop")
                stopper.start()
                while stopper.is_alive():
                    with contextlib.suppress(OSError):
                        socket.create_connection((self._ip_address, self._port), timeout=0.5).close()
                    stopper.join(0.01)
            self._thread.join()

    return MotoServer(**kwargs)
