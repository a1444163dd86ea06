"""PgBouncer in transaction mode in front of a local Postgres: what Supabase's pooler on port
6543 is to a deployed function (no session state, no server-side prepared statements kept
across transactions). Debian's ``pgbouncer`` package; started and stopped by the code.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from shared.runtime.localstack import free_port


def available() -> bool:
    return shutil.which("pgbouncer") is not None


class PgBouncer:
    def __init__(self, upstream_url: str, data_dir: Path, port: int | None = None, pool_size: int = 10) -> None:
        self.upstream = urlparse(upstream_url)
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.pool_size = pool_size
        self._proc: subprocess.Popen | None = None

    @property
    def dbname(self) -> str:
        return self.upstream.path.lstrip("/") or "postgres"

    @property
    def url(self) -> str:
        user = self.upstream.username or "postgres"
        return f"postgresql://{user}@127.0.0.1:{self.port}/{self.dbname}"

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root and switches user; that user may not reach
            # data_dir (pytest's temp dirs are 0700), so it gets a directory of its own.
            if not hasattr(self, "_runtime_dir"):
                self._runtime_dir = Path(tempfile.mkdtemp(prefix="docpipe-pgbouncer-"))
            self.data_dir = self._runtime_dir
        query = parse_qs(self.upstream.query)
        host = (query.get("host") or [self.upstream.hostname or "127.0.0.1"])[0]
        port = self.upstream.port or 5432
        user = self.upstream.username or "postgres"
        lines = [
            "[databases]",
            f"{self.dbname} = host={host} port={port} dbname={self.dbname} user={user}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            f"unix_socket_dir = {self.data_dir}",
            "auth_type = trust",
            f"auth_file = {self.data_dir / 'userlist.txt'}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 200",
            # Supabase's pooler drops session state between transactions; so does this one.
            "server_reset_query =",
            # A server login that failed (Postgres restarting, or at max_connections a moment) is
            # tried again after this many seconds; PgBouncer's default, 15, outlasts a client's
            # connect timeout (the adapter's 10 s), and every client waiting meanwhile fails.
            "server_login_retry = 1",
            "ignore_startup_parameters = extra_float_digits,options",
            f"logfile = {self.data_dir / 'pgbouncer.log'}",
            f"pidfile = {self.data_dir / 'pgbouncer.pid'}",
            "admin_users = " + user,
        ]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; it switches to this user after start.
            lines.append(f"user = {_unprivileged_user()}")
        config = self.data_dir / "pgbouncer.ini"
        config.write_text("\n".join(lines) + "\n")
        (self.data_dir / "userlist.txt").write_text(f'"{user}" ""\n')
        if os.geteuid() == 0:
            account = pwd.getpwnam(_unprivileged_user())
            for path in (self.data_dir, config, self.data_dir / "userlist.txt"):
                os.chown(path, account.pw_uid, account.pw_gid)
        return config

    def start(self, timeout_s: float = 10.0) -> PgBouncer:
        config = self._write_config()
        (self.data_dir / "pgbouncer.pid").unlink(missing_ok=True)  # left by a killed run
        self._proc = subprocess.Popen(
            ["pgbouncer", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.data_dir / "pgbouncer.log")
                raise RuntimeError("pgbouncer exited: " + (log.read_text()[-500:] if log.exists() else "no log"))
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.05)
        raise RuntimeError("pgbouncer did not start listening")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if hasattr(self, "_runtime_dir"):
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            del self._runtime_dir

    def restart(self) -> None:
        """Every client connection is dropped, as in a pooler failover or a deploy."""
        self.stop()
        self.start()

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _unprivileged_user() -> str:
    for name in ("pgserver", "postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return "nobody"
