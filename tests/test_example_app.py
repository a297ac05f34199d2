"""The example project (examples/school) end to end, under a real uvicorn, and ``make demo``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.server import ROOT, free_port, wait_for_port

SCHOOL = ROOT / "examples" / "school"


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of the configured kind, for the example app."""
    if settings.DATABASE == "sqlite":
        yield f"sqlite:///{tmp_path / 'school.sqlite3'}"
        return
    import psycopg

    name = f"aorm_example_{uuid.uuid4().hex[:8]}"
    server = "postgresql://postgres@127.0.0.1:5432"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def example_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, **extra}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # pytest-django's, not the example's
    return env


def manage(database_url: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=SCHOOL,
        env=example_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_view_over_http(database_url: str) -> None:
    manage(database_url, "migrate", "--noinput", "-v", "0")
    assert "Loaded 5 sample students" in manage(database_url, "load_students")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "school.asgi:application", "--port", str(port)],
        cwd=SCHOOL,
        env=example_env(database_url, DEBUG="0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            listing = http.get("/students/").json()
            assert listing[0] == {"name": "Aman", "age": 20} and len(listing) == 5

            assert http.get("/example/").json() == {"student": "Ravi", "total_students": 6}

            created = http.post("/students/create/", content=b'{"name": "Asha", "age": 19}')
            assert created.status_code == 201
            new_id = created.json()["id"]
            assert http.get(f"/students/{new_id}/").json() == {
                "id": new_id,
                "name": "Asha",
                "age": 19,
            }
            patched = http.patch(f"/students/{new_id}/", content=b'{"age": 20}')
            assert patched.json()["age"] == 20

            bad = http.post("/students/create/", content=b'{"name": "Asha", ')
            assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
            bad = http.post("/students/create/", content=b'{"name": "", "age": 3}')
            assert bad.status_code == 400 and "name" in bad.json()["error"]

            missing = http.get("/students/999999/")
            assert missing.status_code == 404

            half_bad = http.post(
                "/students/enrol/", content=b'[{"name": "X", "age": 1}, {"name": "Y"}]'
            )
            assert half_bad.status_code == 400  # nothing written: the transaction rolled back
            enrolled = http.post(
                "/students/enrol/", content=b'[{"name": "X", "age": 1}, {"name": "Y", "age": 2}]'
            )
            assert [s["name"] for s in enrolled.json()] == ["X", "Y"]

            assert http.delete(f"/students/{new_id}/").json() == {"deleted": new_id}
            assert http.get(f"/students/{new_id}/").status_code == 404
            names = [s["name"] for s in http.get("/students/").json()]
            assert names == ["Aman", "Meera", "Priya", "Sara", "Kabir", "Ravi", "X", "Y"]
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    assert "Traceback" not in output, output


@pytest.mark.skipif(settings.DATABASE != "sqlite", reason="make demo serves SQLite")
def test_make_demo(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "demo", f"PORT={port}"],
        cwd=ROOT,
        env=example_env(f"sqlite:///{tmp_path / 'demo.sqlite3'}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc)
        response = httpx.get(f"http://127.0.0.1:{port}/students/", timeout=30)
        assert response.status_code == 200
        assert len(response.json()) == 5
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/students/" in output
