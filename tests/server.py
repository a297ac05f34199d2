"""Run a real uvicorn server in a subprocess, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
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


@contextmanager
def uvicorn_server(app: str = "tests.asgi:application", **env: str) -> Iterator[str]:
    """Serve ``app`` on the test database; yield its base URL; stop it and check its stderr."""
    port = free_port()
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environ["AORM_TEST_USE_NAME"] = connection.settings_dict["NAME"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
