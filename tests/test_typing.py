"""Typing: mypy, with django-stubs and aorm's plugin, on tests/typing_sample/sample.py.

The sample marks each line with what mypy must say there (``# revealed: T``,
``# error: code``); the test runs mypy as a user would (a fresh cache, the
sample's own mypy.ini) and compares everything mypy reports with the marks.
django-stubs and mypy come with the test extra.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

# Type checking does not depend on the database: run once per Django version,
# in the SQLite run, which every machine has.
pytestmark = pytest.mark.skipif(
    settings.DATABASE != "sqlite", reason="type checking: run once, with SQLite"
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Path("tests/typing_sample")
CONFIG = SAMPLE / "mypy.ini"
MARK = re.compile(r"\S  # (revealed|error): (.+)$")  # after code, as ruff formats a comment
REPORT = re.compile(r"(?P<path>[^:]+):(?P<line>\d+): (?P<kind>note|error): (?P<message>.*)$")
DJANGO = "mypy_django_plugin.main"
QUALIFIED = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")


def mypy(config: Path, cache: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty"),
            *("--config-file", str(config), "--cache-dir", str(cache), *map(str, files)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def marks(path: Path) -> dict[int, tuple[str, str]]:
    """Line number -> what the sample says mypy reports there."""
    lines = (ROOT / path).read_text().splitlines()
    return {
        number: (match[1], match[2])
        for number, line in enumerate(lines, 1)
        if (match := MARK.search(line))
    }


def reported(output: str) -> dict[int, tuple[str, str]]:
    """Line number -> what mypy reported there: a revealed type, or an error's code."""
    found: dict[int, tuple[str, str]] = {}
    for line in output.splitlines():
        report = REPORT.match(line)
        assert report and report["path"] == str(SAMPLE / "sample.py"), line
        number, message = int(report["line"]), report["message"]
        if report["kind"] == "note":
            revealed = re.fullmatch(r'Revealed type is "(.*)"', message)
            assert revealed, line
            assert number not in found, line
            found[number] = ("revealed", QUALIFIED.sub(r"\1", revealed[1]))
        else:
            code = re.search(r"\[([a-z-]+)\]$", message)
            assert code and number not in found, line
            found[number] = ("error", code[1])
    return found


def test_queryset_and_public_api_types(tmp_path: Path) -> None:
    expected = marks(SAMPLE / "sample.py")
    # Twice: the second run reads django-stubs' classes, with aorm's methods, from the cache.
    for _ in range(2):
        result = mypy(CONFIG, tmp_path / "cache", SAMPLE / "sample.py")
        assert result.returncode == 1, result.stdout + result.stderr  # the sample's errors
        assert result.stderr == ""
        assert reported(result.stdout) == expected


def test_plugin_listed_after_django_stubs_is_refused(tmp_path: Path) -> None:
    """Listed second, aorm's hooks would never run and ``await qs`` would be rejected."""
    config = tmp_path / "mypy.ini"
    text = (ROOT / CONFIG).read_text()
    assert f"plugins = aorm.mypy, {DJANGO}" in text
    config.write_text(text.replace("aorm.mypy, mypy_django_plugin.main", f"{DJANGO}, aorm.mypy"))
    result = mypy(config, tmp_path / "cache", SAMPLE / "models.py")
    assert result.returncode != 0
    assert f"aorm.mypy: list it before {DJANGO} in mypy's plugins" in result.stderr
