"""Build aorm's sdist and wheel, install the wheel into a fresh venv, run the seeds there.

Used by ``make wheel-check`` (part of ``make test``): what a user gets from
``pip install dist/*.whl`` must import, pass Django's system checks and run the
seeds' views, without the checkout on ``sys.path``. Then the same project is
installed from a Git URL (``git+file://`` of this checkout's HEAD), the form the
README gives for installing from a repository. Last, the documentation's
tutorial (docs/tutorial.md) is followed in that venv, its files taken from the
page itself: ``startproject``, the settings, the seeds' views, ``migrate``,
uvicorn, and the answers the page shows.

``python -m tests.wheel_check [--keep]``: ``--keep`` leaves the temporary
directory for inspection.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from support import example
from support.services import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent

# A project of its own, outside the checkout, around a copy of the example app's
# students app (the seeds' model and views, verbatim, and its migrations), served
# through Django's ASGI handler by its AsyncClient.
SEED_PROJECT = {
    "seedsite/__init__.py": "",
    "seedsite/settings.py": """
        from pathlib import Path
        SECRET_KEY = "wheel-check"
        USE_TZ = True
        INSTALLED_APPS = ["aorm", "students"]
        ROOT_URLCONF = "seedsite.urls"
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        ALLOWED_HOSTS = ["*"]
        DATABASES = {
            "default": {
                "ENGINE": "aorm.backends.sqlite3",
                "NAME": str(Path(__file__).resolve().parent.parent / "seeds.sqlite3"),
            }
        }
    """,
    "seedsite/urls.py": """
        from django.urls import path
        from students import views
        urlpatterns = [
            path("students/", views.student_list),
            path("example/", views.example_view),
        ]
    """,
    "check_seeds.py": """
        import asyncio, os, sys
        from pathlib import Path

        os.environ["DJANGO_SETTINGS_MODULE"] = "seedsite.settings"
        import django
        django.setup()
        import aorm
        from django.core.management import call_command
        from django.db import connections
        from django.test import AsyncClient
        from students.models import Student

        venv = Path(sys.prefix).resolve()
        assert Path(aorm.__file__).resolve().is_relative_to(venv), aorm.__file__
        call_command("check", fail_level="WARNING")
        call_command("migrate", verbosity=0)
        Student.objects.bulk_create([Student(name="Aman", age=20), Student(name="Meera", age=21)])

        async def main():
            client = AsyncClient()
            listing = (await client.get("/students/")).json()
            assert listing == [{"name": "Aman", "age": 20}, {"name": "Meera", "age": 21}], listing
            example = (await client.get("/example/")).json()
            assert example == {"student": "Ravi", "total_students": 3}, example
            assert type(connections["default"]).__module__.startswith("aorm.backends.sqlite3")

        asyncio.run(main())
        print(f"seeds' views OK with aorm {aorm.__version__} from {aorm.__file__}")
    """,
}

# What the wheel must ship beyond the Python modules.
WHEEL_MUST_HOLD = [
    "aorm/py.typed",
    "aorm/backends/postgresql/base.py",
    "aorm/backends/sqlite3/base.py",
]


def run(*args: str | Path, cwd: Path | None = None) -> str:
    """Run a command, fail with its output if it fails."""
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"wheel-check: {' '.join(map(str, args))} failed:\n{proc.stdout}")
    return proc.stdout


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def write_project(where: Path) -> None:
    for name, text in SEED_PROJECT.items():
        path = where / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    # The app without its django-ninja API, which needs the demo's own project and packages.
    shutil.copytree(
        example.PROJECT / "students",
        where / "students",
        ignore=shutil.ignore_patterns("api.py", "__pycache__"),
    )


def fresh_venv(where: Path) -> Path:
    run(sys.executable, "-m", "venv", where)
    python = where / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--upgrade", "pip")
    return python


def tutorial_files(page: str) -> dict[str, str]:
    """The files the tutorial shows whole: a ```python block after a `path`: line."""
    blocks = re.finditer(r"^`([\w/]+\.py)`:\n\n```python\n(.*?)^```", page, re.M | re.S)
    return {match[1]: match[2] for match in blocks}


def tutorial_answers(page: str) -> dict[str, object]:
    """What the tutorial's console block says each curl prints: path -> JSON."""
    console = re.search(r"```console\n(.*?)```", page, re.S)
    assert console, "docs/tutorial.md: no console block"
    lines = console[1].splitlines()
    return {
        re.sub(r"^\$ curl http://127\.0\.0\.1:8000", "", line): json.loads(answer)
        for line, answer in itertools.pairwise(lines)
        if line.startswith("$ curl ")
    }


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def follow_tutorial(venv: Path, where: Path) -> str:
    """docs/tutorial.md, step by step, in ``venv``: the answers it shows, or a failure."""
    page = (ROOT / "docs" / "tutorial.md").read_text()
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    where.mkdir()
    run(python, "-m", "pip", "install", "-q", "uvicorn")
    run(bin_dir / "django-admin", "startproject", "mysite", ".", cwd=where)
    run(python, "manage.py", "startapp", "students", cwd=where)
    # Step 3, as the page says it: two apps appended, the engine swapped.
    settings = where / "mysite" / "settings.py"
    text = settings.read_text()
    text, added = re.subn(
        r"(INSTALLED_APPS = \[.*?)(\n\])",
        r'\1\n    "aorm",\n    "students",\2',
        text,
        count=1,
        flags=re.S,
    )
    text, swapped = re.subn(
        r"[\"']django\.db\.backends\.sqlite3[\"']", '"aorm.backends.sqlite3"', text
    )
    assert added == 1 and swapped == 1, "startproject's settings changed shape"
    settings.write_text(text)
    files = tutorial_files(page)
    assert set(files) == {"students/models.py", "students/views.py", "mysite/urls.py"}, files
    for name, source in files.items():
        (where / name).write_text(source)
    run(python, "manage.py", "makemigrations", "students", cwd=where)
    run(python, "manage.py", "migrate", "-v", "0", cwd=where)
    port = free_port()
    server = subprocess.Popen(
        [bin_dir / "uvicorn", "mysite.asgi:application", "--port", str(port)],
        cwd=where,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, server, seconds=60)
        answers = tutorial_answers(page)
        for path, expected in answers.items():
            status, body = get(f"http://127.0.0.1:{port}{path}")
            assert status == 200 and json.loads(body) == expected, (path, status, body[:300])
        status, _ = get(f"http://127.0.0.1:{port}/example/")
        assert status == 500, "the page says a second /example/ answers 500"
    finally:
        server.terminate()
        server.communicate(timeout=30)
    lint = subprocess.run([python, "-m", "aorm.lint", "students"], cwd=where, capture_output=True)
    assert lint.returncode == 0 and not lint.stdout, lint.stdout
    return f"{len(files)} files from the page, {len(answers)} answers as shown"


def main() -> int:
    keep = "--keep" in sys.argv[1:]
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="aorm-wheel-check-"))
    try:
        dist = tmp / "dist"
        # No --sdist/--wheel: the wheel is built from the sdist, which proves the sdist complete.
        run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
        (wheel,) = dist.glob("django_aorm-*.whl")
        (sdist,) = dist.glob("django_aorm-*.tar.gz")
        names = set(zipfile.ZipFile(wheel).namelist())
        missing = [n for n in WHEEL_MUST_HOLD if n not in names]
        assert not missing, f"{wheel.name} lacks {missing}"
        assert not any(n.startswith(("tests/", "examples/")) for n in names), sorted(names)

        python = fresh_venv(tmp / "venv")
        run(python, "-m", "pip", "install", "-q", wheel)
        project = tmp / "project"
        write_project(project)
        print(
            f"wheel-check: {wheel.name}: {last_line(run(python, 'check_seeds.py', cwd=project))}"
        )
        requires = run(
            python, "-c", "import importlib.metadata as m; print(m.requires('django-aorm'))"
        )
        assert "psycopg" in requires and 'extra == "postgresql"' in requires, requires

        # The README's Git URL form, on this checkout's committed HEAD.
        (project / "seeds.sqlite3").unlink()
        run(python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
            f"django-aorm @ git+file://{ROOT}")  # fmt: skip
        print(f"wheel-check: git URL: {last_line(run(python, 'check_seeds.py', cwd=project))}")
        tutorial = follow_tutorial(tmp / "venv", tmp / "tutorial")
        print(f"wheel-check: docs/tutorial.md followed: {tutorial}")
        print(
            f"wheel-check: {sdist.name} and {wheel.name} built, installed in a fresh venv, "
            f"seeds OK ({time.monotonic() - started:.0f}s)"
        )
    finally:
        if keep:
            print(f"wheel-check: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
