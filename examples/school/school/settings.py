"""The seeds' school project, on aorm.

``DEBUG`` (``1``, the default, or ``0``) and the database come from the
environment. The database comes from ``DATABASE_URL`` (``sqlite:///path``,
``postgres://user@host:port/name`` or ``mysql://user@host:port/name``); without
it, a SQLite file next to this project.
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True

INSTALLED_APPS = ["aorm", "students"]
# A JSON API for curl, scripts and the page at /, whose forms send JSON with
# fetch(): no sessions, no CSRF (add them for a site with logins). Every error
# is JSON (school/middleware.py), with a traceback only when DEBUG is on.
MIDDLEWARE = [
    "school.middleware.JsonErrorsMiddleware",
    "django.middleware.common.CommonMiddleware",
]
# Errors are logged on the console whatever DEBUG says (Django's default only
# logs them with DEBUG on).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False}},
}
ROOT_URLCONF = "school.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

ENGINES = {
    "sqlite": "aorm.backends.sqlite3",
    "postgres": "aorm.backends.postgresql",
    "postgresql": "aorm.backends.postgresql",
    "mysql": "aorm.backends.mysql",
}


def database_from_url(url: str) -> dict[str, object]:
    """Django's DATABASES entry for a database URL, on aorm's backends."""
    parts = urlsplit(url)
    if parts.scheme not in ENGINES:
        raise ValueError(f"DATABASE_URL scheme {parts.scheme!r}: expected {sorted(ENGINES)}")
    if parts.scheme == "sqlite":
        return {"ENGINE": ENGINES["sqlite"], "NAME": unquote(parts.path[1:]) or ":memory:"}
    return {
        "ENGINE": ENGINES[parts.scheme],
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 20}},
    }


DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'school.sqlite3'}")
    )
}
