"""The local stack, started by the code, no Docker: moto's server for SQS and S3 on loopback
and an embedded PostgreSQL 16 from the ``pgserver`` wheel, its data under ``data_dir``.

``docpipe local up`` runs it in the foreground and prints the environment to export;
``docpipe process`` starts it in-process and stops it when done. Users with Docker can use
docker-compose.yml (ElasticMQ) instead; the adapters cannot tell the difference.
"""

from __future__ import annotations

import contextlib
import logging
import socket
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

    def start(self) -> LocalStack:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            import pgserver
        from moto.server import ThreadedMotoServer

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # werkzeug logs every request line; the stack's own output is the env it prints.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.port = self.port or free_port()
        self._moto = _moto_server(ThreadedMotoServer, ip_address="127.0.0.1", port=self.port, verbose=False)
        self._moto.start()
        if self.postgres:
            self._pg = pgserver.get_server(self.data_dir / "pg", cleanup_mode="stop")
        return self

    def stop(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
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


def _moto_server(base, **kwargs):
    """moto's threaded server, polling for shutdown every 20 ms rather than every 0.5 s (the
    socketserver default), so that stopping the stack does not wait up to half a second."""

    class MotoServer(base):
        def _server_entry(self) -> None:
            from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
            from werkzeug.serving import make_server

            app = DomainDispatcherApplication(create_backend_app)
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever(poll_interval=0.02)

    return MotoServer(**kwargs)
