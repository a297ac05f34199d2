"""The example project (examples/school) end to end, under a real uvicorn, and ``make demo``.

Every error path is checked on the database the suite runs on (SQLite and
PostgreSQL): the answers must be the same JSON on both. The page at ``/`` is
driven in a real headless chromium (Debian's, through Selenium and
chromedriver), which also takes the screenshot the README shows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings

from tests.server import ROOT, free_port, wait_for_port

# The example app's settings know SQLite and PostgreSQL URLs; under another
# database the suite's runs on those two cover it.
pytestmark = pytest.mark.skipif(
    settings.DATABASE not in ("sqlite", "postgresql"),
    reason=f"the example app is tested on SQLite and PostgreSQL, not {settings.DATABASE}",
)

SCHOOL = ROOT / "examples" / "school"
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
SCREENSHOT = ROOT / "docs" / "demo.png"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh database of the configured kind, for the example app."""
    if settings.DATABASE == "sqlite":
        yield f"sqlite:///{tmp_path / 'school.sqlite3'}"
        return
    import psycopg

    name = f"aorm_example_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        drop_postgres_database(name)


def drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres") as admin:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        return admin.execute(query, [name]).fetchone() is not None


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


@dataclass
class Server:
    """A running example app: its URL, and its console output once stopped."""

    url: str
    output: str = ""


@contextmanager
def school_server(database_url: str, *, debug: bool) -> Iterator[Server]:
    """The example app, migrated and loaded, under uvicorn on a free loopback port."""
    manage(database_url, "migrate", "--noinput", "-v", "0")
    loaded = manage(database_url, "load_students")
    assert "Loaded 5 sample students" in loaded and "Loaded 3 sample courses" in loaded
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "school.asgi:application", "--port", str(port)],
        cwd=SCHOOL,
        env=example_env(database_url, DEBUG="1" if debug else "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(f"http://127.0.0.1:{port}")
    try:
        wait_for_port(port, proc)
        yield server
    finally:
        proc.send_signal(signal.SIGINT)
        server.output = proc.communicate(timeout=30)[0]


def test_every_view_over_http(database_url: str) -> None:
    with (
        school_server(database_url, debug=False) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        listing = http.get("/students/").json()
        assert listing[0] == {"name": "Aman", "age": 20} and len(listing) == 5

        assert http.get("/example/").json() == {"student": "Ravi", "total_students": 6}

        # The courses API (django-ninja, students/api.py): each course with its students.
        assert courses_and_students(http) == SAMPLE_COURSES

        created = http.post("/students/create/", content=b'{"name": "Asha", "age": 19}')
        assert created.status_code == 201
        new_id = created.json()["id"]
        assert http.get(f"/students/{new_id}/").json() == {"id": new_id, "name": "Asha", "age": 19}
        patched = http.patch(f"/students/{new_id}/", content=b'{"age": 20}')
        assert patched.json()["age"] == 20

        physics = http.get("/api/courses/").json()[1]["id"]
        for _ in range(2):  # enrolling twice changes nothing
            joined = http.post(f"/api/courses/{physics}/students/", json={"student": new_id})
            assert joined.status_code == 200, joined.text
            assert joined.json() == {
                "id": physics,
                "title": "Physics",
                "students": [
                    {"id": 1, "name": "Aman"},
                    {"id": 4, "name": "Sara"},
                    {"id": new_id, "name": "Asha"},
                ],
            }

        half_bad = http.post(
            "/students/enrol/", content=b'[{"name": "X", "age": 1}, {"name": "Y"}]'
        )
        assert half_bad.status_code == 400  # nothing written: the transaction rolled back
        enrolled = http.post(
            "/students/enrol/", content=b'[{"name": "X", "age": 1}, {"name": "Y", "age": 2}]'
        )
        assert [s["name"] for s in enrolled.json()] == ["X", "Y"]

        assert courses_and_students(http)[1] == ("Physics", ["Aman", "Sara", "Asha"])
        assert http.delete(f"/students/{new_id}/").json() == {"deleted": new_id}
        assert http.get(f"/students/{new_id}/").status_code == 404
        assert courses_and_students(http) == SAMPLE_COURSES  # no longer in Physics
        names = [s["name"] for s in http.get("/students/").json()]
        assert names == ["Aman", "Meera", "Priya", "Sara", "Kabir", "Ravi", "X", "Y"]
    assert "Traceback" not in server.output, server.output


SAMPLE_COURSES = [
    ("Mathematics", ["Aman", "Meera", "Priya"]),
    ("Physics", ["Aman", "Sara"]),
    ("Literature", ["Kabir"]),
]


def courses_and_students(http: httpx.Client) -> list[tuple[str, list[str]]]:
    response = http.get("/api/courses/")
    assert response.status_code == 200, response.text
    return [(c["title"], [s["name"] for s in c["students"]]) for c in response.json()]


LONG = "n" * 101
# (method, path, body, status, words of the error message): each answered as JSON.
ERRORS: list[tuple[str, str, bytes | None, int, str]] = [
    ("GET", "/no/such/endpoint/", None, 404, "GET / lists the endpoints"),
    ("GET", "/students/999999/", None, 404, "No Student matches"),
    ("GET", "/students/99999999999999999999999/", None, 404, "No Student matches"),
    ("PUT", "/students/1/", b'{"age": 3}', 405, "PUT is not allowed"),
    ("GET", "/students/create/", None, 405, "GET is not allowed"),
    ("DELETE", "/students/", None, 405, "DELETE is not allowed"),
    ("POST", "/students/create", b'{"name": "A", "age": 3}', 404, "needs a trailing slash"),
    ("POST", "/students/create/", b'{"name": "A", ', 400, "not valid JSON"),
    ("POST", "/students/create/", b"\xff\xfe", 400, "not valid JSON"),
    ("POST", "/students/create/", b"[" * 100_000, 400, "nested too deeply"),
    ("POST", "/students/create/", b'{"name": "A", "age": 3, "x": 1}', 400, "unknown field"),
    ("POST", "/students/create/", b'{"name": "A"}', 400, "both"),
    ("POST", "/students/create/", b'{"name": "", "age": 3}', 400, "non-empty string"),
    ("POST", "/students/create/", b'{"name": 7, "age": 3}', 400, "non-empty string"),
    ("POST", "/students/create/", b'{"name": "A", "age": "3"}', 400, "integer"),
    ("POST", "/students/create/", b'{"name": "A", "age": true}', 400, "integer"),
    ("POST", "/students/create/", b'{"name": "A", "age": -1}', 400, "between 0 and 150"),
    ("POST", "/students/create/", f'{{"name": "{LONG}", "age": 3}}'.encode(), 400, "at most 100"),
    ("POST", "/students/create/", b'{"name": "a\\u0000b", "age": 3}', 400, "NUL"),
    ("POST", "/students/create/", b'{"name": "a\\ud800b", "age": 3}', 400, "lone surrogate"),
    ("PATCH", "/students/1/", f'{{"name": "{LONG}"}}'.encode(), 400, "at most 100"),
    ("PATCH", "/students/1/", b'{"name": "\\u0000"}', 400, "NUL"),
    ("PATCH", "/students/1/", b'{"age": 1000}', 400, "between 0 and 150"),
    ("POST", "/students/enrol/", b"{}", 400, "non-empty JSON list"),
    ("POST", "/students/enrol/", f'[{{"name": "A", "age": 1}}, {{"name": "{LONG}", "age": 2}}]'.encode(), 400, "at most 100"),  # noqa: E501
    ("POST", "/students/enrol/", b'[{"name": "A", "age": 1}, {"name": "\\u0000", "age": 2}]', 400, "NUL"),  # noqa: E501
    ("POST", "/api/courses/999999/students/", b'{"student": 1}', 404, "No Course matches"),
    ("POST", "/api/courses/1/students/", b'{"student": 999999}', 404, "No Student matches"),
    ("POST", "/api/courses/1/students/", b'{"student": 99999999999999999999999}', 404, "No Student matches"),  # noqa: E501
    ("POST", "/api/courses/1/students/", b'{"student": "x"}', 400, "student: Input should be a valid integer"),  # noqa: E501
    ("POST", "/api/courses/1/students/", b"{}", 400, "student: Field required"),
    ("POST", "/api/courses/1/students/", b'{"student": 1', 400, "Cannot parse request body"),
    ("POST", "/api/courses/1/students", b'{"student": 1}', 404, "needs a trailing slash"),
    ("GET", "/api/courses/1/students/", None, 405, "GET is not allowed"),
]  # fmt: skip


def test_every_error_is_json(database_url: str) -> None:
    """The same status and JSON on SQLite and PostgreSQL; nothing written; no traceback."""
    with (
        school_server(database_url, debug=False) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        for method, path, body, status, words in ERRORS:
            response = http.request(method, path, content=body)
            where = f"{method} {path} {body!r:.60}: {response.status_code} {response.text:.300}"
            assert response.status_code == status, where
            assert response.headers["Content-Type"] == "application/json", where
            assert words in response.json()["error"], where
            assert response.json()["status"] == status, where
            assert response.json()["path"] == path.split("?")[0], where
            if status == 405:
                assert response.headers["Allow"], where
        assert http.put("/students/1/").headers["Allow"] == "GET, PATCH, DELETE"
        assert http.get("/students/create/").headers["Allow"] == "POST"

        bad_host = http.get("/students/", headers={"Host": "evil.example"})
        assert bad_host.status_code == 400 and bad_host.json()["error"] == "Bad Request"

        invalid = http.post("/students/create/", content=b'{"name": "A"}')
        assert invalid.json() == {
            "error": 'both "name" and "age" are required',
            "status": 400,
            "path": "/students/create/",
        }

        # A name of exactly max_length is fine on every database.
        fits = http.post("/students/create/", json={"name": "m" * 100, "age": 3})
        assert fits.status_code == 201, fits.text
        # Nothing else was written: the rejected requests never reached the database.
        assert len(http.get("/students/").json()) == 6
        assert courses_and_students(http) == SAMPLE_COURSES

        # The seeds' example_view, verbatim: its second call finds two Ravis.
        assert http.get("/example/").status_code == 200
        failed = http.get("/example/")
        assert failed.status_code == 500
        assert failed.json() == {
            "error": "internal server error (logged on the server)",
            "status": 500,
            "path": "/example/",
        }
    # Without DEBUG the traceback is in the server's log, not in the response.
    assert "MultipleObjectsReturned" in server.output
    assert server.output.count("Traceback") == 1, server.output


def test_500_carries_the_traceback_with_debug(database_url: str) -> None:
    with (
        school_server(database_url, debug=True) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert http.get("/example/").status_code == 200
        failed = http.get("/example/")
        assert failed.status_code == 500
        body = failed.json()
        assert body["error"].startswith("MultipleObjectsReturned: get() returned more than one")
        assert "aget(name=" in "".join(body["traceback"])
        missing = http.get("/nowhere/")  # Django's debug 404 page, as JSON
        assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/json"


def test_index_page_lists_every_endpoint(database_url: str) -> None:
    with (
        school_server(database_url, debug=False) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        page = http.get("/")
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        endpoints = ("/students/", "/example/", "/students/create/", "/students/enrol/")
        for endpoint in (*endpoints, "/api/courses/"):
            assert f"<code>{endpoint}</code>" in page.text
        assert page.text.count("<form") == 9
        assert http.post("/").status_code == 405


def browser_or_skip() -> Any:
    """Selenium driving Debian's chromium, or a skip that says what is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.skip(
            f"browser test skipped: {', '.join(missing)} not installed "
            "(apt-get install chromium chromium-driver; `make test` does it where apt works)"
        )
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("browser test skipped: selenium not installed (pip install '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root
        "--disable-dev-shm-usage",
        "--window-size=1200,1350",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    return webdriver.Chrome(options=options, service=service)


def test_index_page_in_a_real_browser(database_url: str) -> None:
    """Create a student with a form, see them listed, enrol them in a course; take a screenshot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with school_server(database_url, debug=False) as server:
        driver = browser_or_skip()
        try:
            wait = WebDriverWait(driver, 30)
            driver.get(f"{server.url}/")
            count = driver.find_element(By.ID, "count")
            wait.until(lambda _: count.text == "5")

            create = driver.find_element(By.ID, "create")
            create.find_element(By.NAME, "name").send_keys("Zoya (from the browser)")
            create.find_element(By.NAME, "age").send_keys("23")
            create.find_element(By.TAG_NAME, "button").click()
            result = create.find_element(By.CSS_SELECTOR, "pre.result")
            wait.until(lambda _: result.get_attribute("data-status") == "201")
            assert '"name": "Zoya (from the browser)"' in result.text

            wait.until(lambda _: count.text == "6")
            table = driver.find_element(By.ID, "students")
            assert "Zoya (from the browser)\n23" in table.text.replace(" 23", "\n23")

            listing = driver.find_element(By.ID, "list")
            listing.find_element(By.TAG_NAME, "button").click()
            listed = listing.find_element(By.CSS_SELECTOR, "pre.result")
            wait.until(lambda _: listed.get_attribute("data-status") == "200")
            assert "Zoya (from the browser)" in listed.text

            # Enrol her in Physics with the courses API's form: the course list shows her.
            zoya = json.loads(result.text.split("\n", 1)[1])["id"]
            courses = driver.find_element(By.ID, "courses")
            wait.until(lambda _: "Aman, Sara" in courses.text)
            physics = next(
                item.text.split(".")[0]
                for item in courses.find_elements(By.TAG_NAME, "li")
                if "Physics" in item.text
            )
            join = driver.find_element(By.ID, "join")
            join.find_element(By.NAME, "id").send_keys(physics)
            join.find_element(By.NAME, "student").send_keys(str(zoya))
            join.find_element(By.TAG_NAME, "button").click()
            joined = join.find_element(By.CSS_SELECTOR, "pre.result")
            wait.until(lambda _: joined.get_attribute("data-status") == "200")
            assert f'"id": {zoya},\n' in joined.text and '"title": "Physics"' in joined.text
            wait.until(lambda _: "Aman, Sara, Zoya (from the browser)" in courses.text)
            assert driver.find_element(By.ID, "course-count").text == "3"

            # An error shown as JSON, as any client would get it.
            detail = driver.find_element(By.ID, "detail")
            detail.find_element(By.NAME, "id").send_keys("999999")
            detail.find_element(By.TAG_NAME, "button").click()
            shown = detail.find_element(By.CSS_SELECTOR, "pre.result")
            wait.until(lambda _: shown.get_attribute("data-status") == "404")
            assert '"error": "No Student matches the given query."' in shown.text

            driver.execute_script("window.scrollTo(0, 0)")  # the forms clicked scrolled it
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shot = Path(f"{SCREENSHOT}.{os.getpid()}.tmp")
            shot.write_bytes(driver.get_screenshot_as_png())
            shot.replace(SCREENSHOT)  # atomic: parallel runs never leave half a PNG
        finally:
            driver.quit()
    assert "Traceback" not in server.output, server.output


def run_make(*args: str, env: dict[str, str], seconds: float = 120) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=seconds,
    )
    return proc.returncode, proc.stdout, time.monotonic() - started


@contextmanager
def make_demo(env: dict[str, str]) -> Iterator[tuple[str, list[str]]]:
    """``make demo`` on a free port: yield its URL and, once stopped, its output's lines."""
    port = free_port()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "demo", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}", lines
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        lines.extend(proc.communicate(timeout=30)[0].splitlines())


def test_make_demo_is_repeatable_and_reset(database_url: str, tmp_path: Path) -> None:
    """Twice in a row on one database, then ``make demo-reset`` removes that database."""
    if settings.DATABASE == "postgresql":
        # A database that does not exist yet: make demo creates it.
        name = f"aorm_demo_{uuid.uuid4().hex[:8]}"
        database_url = f"postgres://postgres@127.0.0.1:5432/{name}"
    env = example_env(database_url)
    try:
        for run in (1, 2):
            with make_demo(env) as (url, output):
                students = httpx.get(f"{url}/students/", timeout=30).json()
                assert len(students) == 5  # loaded once, not again on the second run
                courses = httpx.get(f"{url}/api/courses/", timeout=30).json()
                assert [len(c["students"]) for c in courses] == [3, 2, 1]
                assert httpx.get(f"{url}/", timeout=30).status_code == 200
            text = "\n".join(output)
            assert f"{url}/students/" in text and f"{url}/api/courses/" in text
            assert "from its second call there are two Ravis" in text
            assert "make demo-reset starts over" in text
            if run == 2:
                assert "5 students already there; nothing loaded." in text
        if settings.DATABASE == "postgresql":
            assert postgres_database_exists(name)
        status, output_text, _ = run_make("demo-reset", env=env)
        assert status == 0, output_text
        if settings.DATABASE == "postgresql":
            assert f"Dropped database {name}." in output_text
            assert not postgres_database_exists(name)
        else:
            assert not Path(database_url.removeprefix("sqlite://")).exists()
            assert "Removed" in output_text
    finally:
        if settings.DATABASE == "postgresql":
            drop_postgres_database(name)


def test_make_demo_names_a_missing_sqlite_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    env = example_env(f"sqlite:///{missing / 'school.sqlite3'}")
    status, output, _ = run_make("demo", f"PORT={free_port()}", env=env)
    assert status != 0 and f"{missing} does not exist: create it" in output, output
    assert "Traceback" not in output, output


def test_make_demo_stops_at_once_without_a_server() -> None:
    """No PostgreSQL where DATABASE_URL points: an error naming the address, in seconds."""
    port = free_port()  # nothing listens there: connections are refused at once
    env = example_env(f"postgres://postgres@127.0.0.1:{port}/school")
    status, output, seconds = run_make("demo", f"PORT={free_port()}", env=env)
    assert status != 0
    assert f"PostgreSQL at 127.0.0.1:{port} cannot be reached" in output, output
    assert "Traceback" not in output and seconds < 20, (seconds, output)


@pytest.mark.skipif(settings.DATABASE != "postgresql", reason="PostgreSQL's permissions")
def test_make_demo_names_the_command_when_it_may_not_create() -> None:
    """A role without CREATEDB: make demo stops at once and prints the createdb command."""
    import psycopg

    role, name = f"aorm_nocreate_{uuid.uuid4().hex[:6]}", f"aorm_demo_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        env = example_env(f"postgres://{role}@127.0.0.1:5432/{name}")
        status, output, seconds = run_make("demo", f"PORT={free_port()}", env=env)
        assert status != 0 and seconds < 20, (seconds, output)
        assert f"Run: createdb -h 127.0.0.1 -p 5432 -U {role} {name}" in output, output
    finally:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
