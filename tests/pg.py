"""A throwaway PostgreSQL server for the test run.

`start_postgres()` runs `initdb` and `pg_ctl` from PATH in a temporary directory: loopback
only, a free port, the unix socket inside that directory, trust authentication, and no fsync
(the data dies with the run). As root it runs them as the `postgres` user, since the server
refuses to run as root. It yields the URL of an empty database and stops and removes the
server on exit. When the server cannot start it raises PostgresUnavailable with the reason
and the server log's tail, so the tests that need it fail rather than skip.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

SUPERUSER = "postgres"
DATABASE = "detector"
_START_TIMEOUT_S = 60
_LOG_TAIL_LINES = 20


class PostgresUnavailable(RuntimeError):
    """The test PostgreSQL could not be started."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SUPERUSER, "--", *command]


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    try:
        done = subprocess.run(
            _as_server_user(command), capture_output=True, text=True, timeout=_START_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PostgresUnavailable(f"{what}: {error}") from error
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()
        if log is not None and log.exists():
            lines = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
            output += "\nserver log:\n" + "\n".join(lines)
        raise PostgresUnavailable(f"{what} failed (exit {done.returncode}): {output}")


def url_for(port: int, database: str) -> str:
    return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{database}"


_fresh_names = (f"test_{n}" for n in itertools.count())


def create_database(server_url: str, name: str = "", template: str | None = None) -> str:
    """Create database `name` (a fresh one when empty) on the server of `server_url`;
    returns its URL."""
    name = name or next(_fresh_names)
    port = make_url(server_url).port or 5432
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(
        host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", autocommit=True
    ) as connection:
        connection.execute(query)
    return url_for(port, name)


@contextmanager
def start_postgres() -> Iterator[str]:
    """Run a PostgreSQL server for the duration of the block; yields a database URL."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if shutil.which(tool) is None:
            raise PostgresUnavailable(f"{tool} is not on PATH (install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="detector-pg-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        user = pwd.getpwnam(SUPERUSER)  # KeyError: no postgres user to run the server as
        os.chown(root, user.pw_uid, user.pw_gid)
    port = _free_port()
    options = " ".join(
        [
            "-c listen_addresses=127.0.0.1",
            f"-c port={port}",
            f"-c unix_socket_directories={root}",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
            "-c max_connections=50",
        ]
    )
    started = False
    try:
        _run(
            ["initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
             "--locale=C", "--no-sync"],
            "initdb",
        )  # fmt: skip
        _run(
            ["pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w",
             "-t", str(_START_TIMEOUT_S), "start"],
            "pg_ctl start",
            log,
        )  # fmt: skip
        started = True
        yield create_database(url_for(port, "postgres"), DATABASE)
    finally:
        if started:
            subprocess.run(
                _as_server_user(["pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=_START_TIMEOUT_S,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)
