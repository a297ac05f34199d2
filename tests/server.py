"""Run a real uvicorn server in a subprocess, on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection
from support.services import free_port, wait_for_port

__all__ = ["ROOT", "free_port", "uvicorn_server", "wait_for_port"]

ROOT = Path(__file__).resolve().parent.parent


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
