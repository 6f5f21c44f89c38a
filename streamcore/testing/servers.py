"""Real PostgreSQL and Redis servers for tests, benchmarks and examples.

Each server runs from Debian's packages (``postgresql``, ``redis-server``) in a fresh
temporary directory on a free loopback port, and is stopped by its process id (never by
name), so several can run side by side and nothing outside the directory is touched.
PostgreSQL refuses to run as root: as root, the data directory is handed to the
``postgres`` system user and the server runs as that user (``subprocess`` starts it
directly, so the process id is the postmaster's own).

>>> server = PostgresServer()          # doctest: +SKIP
>>> server.start().dsn                 # doctest: +SKIP
'postgresql://streamcore@127.0.0.1:54321/streamcore'
>>> server.stop()                      # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "RedisServer", "ServerNotInstalledError", "find_postgres_binary", "free_port"]

#: how long a server may take to accept connections.
START_TIMEOUT_S = 60.0
#: PostgreSQL settings for throw-away test clusters (no durability needed).
PG_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=60",
    "shared_buffers=64MB",
)


class ServerNotInstalledError(RuntimeError):
    """The server's program is not on this machine (install the Debian package it names)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_postgres_binary(name: str) -> str:
    """``initdb``/``postgres`` on PATH, or in the newest ``/usr/lib/postgresql/<version>/bin``.

    Raises:
        ServerNotInstalledError: PostgreSQL is not installed.
    """
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    if candidates:
        return max(candidates, key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    msg = (
        f"PostgreSQL's {name} was not found (install Debian's postgresql package: apt-get install postgresql)"
    )
    raise ServerNotInstalledError(msg)


def _wait_port(port: int, proc: subprocess.Popen[Any], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            msg = f"{what} exited with {proc.returncode} while starting: {tail}"
            raise RuntimeError(msg)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    msg = f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S} s"
    raise RuntimeError(msg)


def _stop(proc: subprocess.Popen[Any] | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(15)


class PostgresServer:
    """A throw-away PostgreSQL cluster: ``start()``, then connect with :attr:`dsn`; ``stop()``.

    Tuned for tests (no fsync); the database ``dbname`` is created, user ``user`` is
    its superuser and needs no password on loopback.
    """

    def __init__(self, dbname: str = "streamcore", user: str = "streamcore") -> None:
        self.dbname = dbname
        self.user = user
        self.port = 0
        self.dsn = ""
        self.directory: Path | None = None
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> PostgresServer:
        """Create the cluster in a temporary directory and start it; returns ``self``."""
        initdb = find_postgres_binary("initdb")
        postgres = find_postgres_binary("postgres")
        self.directory = Path(tempfile.mkdtemp(prefix="streamcore-pg-"))
        run_as = None
        if os.geteuid() == 0:
            run_as = _system_user()
            pw = pwd.getpwnam(run_as)
            os.chown(self.directory, pw.pw_uid, pw.pw_gid)
        data = self.directory / "data"
        log = self.directory / "server.log"
        subprocess.run(
            [initdb, "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync"],
            user=run_as,
            cwd=self.directory,
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        with open(log, "wb") as out:
            args = [postgres, "-D", str(data), "-p", str(self.port)]
            args += ["-h", "127.0.0.1", "-k", str(self.directory)]
            for setting in PG_SETTINGS:
                args += ["-c", setting]
            self.proc = subprocess.Popen(
                args,
                user=run_as,
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_port(self.port, self.proc, "postgres", log)
        self._create_database()
        self.dsn = f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"
        return self

    def _create_database(self) -> None:
        import psycopg

        admin = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'CREATE DATABASE "{self.dbname}"')
                return
            except psycopg.OperationalError:  # still starting up
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown by process id, then remove the directory."""
        try:
            _stop(self.proc, signal.SIGINT)
        finally:
            self.proc = None
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _system_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    msg = "running PostgreSQL as root needs a 'postgres' or 'nobody' user to run it as"
    raise ServerNotInstalledError(msg)


class RedisServer:
    """A throw-away Redis server without persistence: ``start()``, then connect with :attr:`url`."""

    def __init__(self) -> None:
        self.port = 0
        self.url = ""
        self.directory: Path | None = None
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> RedisServer:
        """Start ``redis-server`` in a temporary directory; returns ``self``."""
        exe = shutil.which("redis-server")
        if exe is None:
            msg = "redis-server was not found (install Debian's package: apt-get install redis-server)"
            raise ServerNotInstalledError(msg)
        self.directory = Path(tempfile.mkdtemp(prefix="streamcore-redis-"))
        self.port = free_port()
        log = self.directory / "server.log"
        with open(log, "wb") as out:
            args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
            args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
            self.proc = subprocess.Popen(
                args,
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_port(self.port, self.proc, "redis-server", log)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        return self

    def stop(self) -> None:
        """Stop by process id, then remove the directory."""
        try:
            _stop(self.proc, signal.SIGTERM)
        finally:
            self.proc = None
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
