"""The database servers this machine may run, and local server processes on free ports.

``tests/``, ``bench/`` and ``conformance/`` all need to know whether a
database can be tested here (its server answers, its drivers are installed)
and to start servers on a free loopback port; this module is the one place
that knows how.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Database -> default server address (None: no server, SQLite).
SERVERS: dict[str, tuple[str, int] | None] = {
    "postgresql": ("127.0.0.1", 5432),
    "sqlite": None,
    "mysql": ("127.0.0.1", 3306),
}
# Database -> (driver modules, what installs them): drivers that may be missing.
DRIVERS: dict[str, tuple[tuple[str, ...], str]] = {
    "mysql": (("MySQLdb", "asyncmy"), "the `mysql` extra; mysqlclient needs libmariadb-dev"),
}


def reachable(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def unavailable(database: str, address: tuple[str, int] | None = None) -> str | None:
    """Why ``database`` cannot be tested here (server or drivers missing), or None.

    ``address`` overrides the default server address of :data:`SERVERS`.
    """
    address = address or SERVERS[database]
    if address is not None and not reachable(*address):
        return f"not reachable at {address[0]}:{address[1]}"
    modules, installer = DRIVERS.get(database, ((), ""))
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed ({installer})"
    return None


def free_port() -> int:
    """A TCP port free on the loopback interface, for a server about to start."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[str], seconds: float = 120) -> None:
    """Wait until a server process listens on ``port``; fail with its output if it dies."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the server did not start:\n{proc.communicate()}") from None
            time.sleep(0.05)


@dataclass
class ServerProcess:
    """A server subprocess started by :func:`serve`; its output once it has stopped."""

    proc: subprocess.Popen[str]
    stdout: str = ""
    stderr: str = ""


@contextmanager
def serve(
    command: list[str], *, port: int, env: dict[str, str], cwd: Path, stop: int = signal.SIGTERM
) -> Iterator[ServerProcess]:
    """Run a server until the block ends: started, awaited until it listens on ``port``,
    stopped with ``stop`` (killed if it has not exited 30 s later); its output kept."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        process = ServerProcess(proc)
        try:
            try:
                wait_for_port(port, proc)
            except RuntimeError:
                err.seek(0)
                raise RuntimeError(f"{' '.join(command)} did not start:\n{err.read()}") from None
            yield process
        finally:
            if proc.poll() is None:
                proc.send_signal(stop)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
            finally:
                out.seek(0)
                err.seek(0)
                process.stdout, process.stderr = out.read(), err.read()
