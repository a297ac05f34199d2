"""A PostgreSQL cluster of a test's own: ``initdb`` and ``pg_ctl`` in a temporary directory.

For tests that stop, kill or restart the server, which the shared one must
never see. The cluster listens on a free loopback port (and a Unix socket in
its own directory), trusts local connections as ``postgres``, and is removed
at the end. PostgreSQL refuses to run as root: when the tests run as root,
``initdb`` and ``pg_ctl`` run as the ``postgres`` OS user (``runuser``), in a
directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.server import free_port

__all__ = ["Cluster", "missing", "throwaway_cluster"]

SERVER_USER = "postgres"  # the OS user the server runs as when the tests run as root
PG_CTL_TIMEOUT = 60  # seconds pg_ctl may wait for a start or a stop


def _bindir() -> Path | None:
    """The newest installed server's binaries (Debian: /usr/lib/postgresql/<version>/bin)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def _run_as() -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []


def missing() -> str | None:
    """Why no throwaway cluster can run here, or None."""
    bindir = _bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        return (
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed (Debian: postgresql)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, and there is no {SERVER_USER!r} OS user to run the server"
        if not shutil.which("runuser"):
            return "running as root, and runuser (util-linux) is missing to run the server"
    return None


@dataclass
class Cluster:
    bindir: Path
    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def _pg_ctl(self, *args: str) -> None:
        command = [*_run_as(), str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PG_CTL_TIMEOUT + 10
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"pg_ctl {' '.join(args)} failed:\n{result.stdout}{result.stderr}\n"
                f"server log:\n{self.server_log()}"
            )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._pg_ctl("start", "-w", "-t", str(PG_CTL_TIMEOUT), "-l", str(self.log), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (sessions terminated, then a shutdown checkpoint) or
        ``immediate`` (every server process quits at once: a crash, recovered from the WAL
        at the next start)."""
        self._pg_ctl("stop", "-w", "-t", str(PG_CTL_TIMEOUT), "-m", mode)

    def server_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connect(self, dbname: str = "postgres", **params: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, **params
        )


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A new cluster, started; stopped and removed at the end. Check :func:`missing` first."""
    bindir = _bindir()
    assert bindir is not None, missing()
    directory = Path(tempfile.mkdtemp(prefix="aorm-cluster-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(directory, user.pw_uid, user.pw_gid)
    cluster = Cluster(bindir, directory, free_port())
    try:
        initdb = subprocess.run(
            [*_run_as(), str(bindir / "initdb"), "-D", str(cluster.data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
        cluster.start()
        try:
            yield cluster
        finally:
            if (cluster.data / "postmaster.pid").exists():
                cluster.stop("immediate")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
