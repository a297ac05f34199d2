"""Settings for aorm's own test suite: real databases, chosen by AORM_TEST_DATABASE.

``AORM_TEST_DATABASE`` is ``postgresql`` (default), ``sqlite`` or ``mysql``.
``AORM_TEST_NAME`` names the test database, so that several runs can share a
server.
"""

import os
import tempfile

from support import example

# The seeds' Student model and views: the example project's app, installed as is.
example.make_importable()

SECRET_KEY = "aorm-tests"
USE_TZ = True
TIME_ZONE = "Europe/Paris"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "aorm",
    "students",
    "tests.app",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
# Fast hashing: the tests log users in, and hashing is not what they measure.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ROOT_URLCONF = "tests.app.urls"
ALLOWED_HOSTS = ["*"]

DATABASE = os.environ.get("AORM_TEST_DATABASE", "postgresql")
TEST_NAME = os.environ.get("AORM_TEST_NAME", "test_aorm")

# The database servers: the prefix of the environment variables that move them, and
# their defaults (database, user, port).
_SERVERS = {
    "postgresql": ("AORM_PG", "postgres", "postgres", "5432"),
    "mysql": ("AORM_MYSQL_", "mysql", "root", "3306"),
}

if DATABASE == "sqlite":
    # A file database, as in production: WAL, several connections, real locks.
    # One file per run, so that concurrent runs don't collide; a server started
    # by a test uses the test's file.
    _file = os.environ.get("AORM_TEST_USE_NAME") or os.path.join(
        tempfile.gettempdir(), f"{TEST_NAME}-{os.getpid()}.sqlite3"
    )
    _server = {"NAME": _file}
    _test = {"NAME": _file}
elif DATABASE in _SERVERS:
    _prefix, _name, _user, _port = _SERVERS[DATABASE]
    _server = {
        # A server started by a test uses the test database by this name.
        "NAME": os.environ.get("AORM_TEST_USE_NAME", _name),
        "USER": os.environ.get(f"{_prefix}USER", _user),
        "HOST": os.environ.get(f"{_prefix}HOST", "127.0.0.1"),
        "PORT": os.environ.get(f"{_prefix}PORT", _port),
    }
    # The test database is created by Django, named by TEST_NAME.
    _test = {"NAME": TEST_NAME}
    if DATABASE == "mysql":  # MariaDB or MySQL
        _test.update(CHARSET="utf8mb4", COLLATION="utf8mb4_unicode_ci")
else:
    raise ValueError(f"AORM_TEST_DATABASE={DATABASE!r}: expected postgresql, sqlite or mysql")

_module = "sqlite3" if DATABASE == "sqlite" else DATABASE
_aorm_engine = f"aorm.backends.{_module}"
_stock_engine = f"django.db.backends.{_module}"
_pool = {"pool": {"min_size": 1, "max_size": 8, "timeout": 10}}
_unpooled: dict[str, object] = {"pool": False}

DATABASES = {
    # The alias under test: aorm's backend, pooled where the database pools.
    "default": {
        "ENGINE": _aorm_engine,
        **_server,
        "OPTIONS": _pool,
        "TEST": _test,
    },
    # aorm without a pool: a connection per operation.
    "unpooled": {
        "ENGINE": _aorm_engine,
        **_server,
        "OPTIONS": _unpooled,
        "TEST": {"MIRROR": "default"},
    },
    # No pool option: aorm's default async pool. CONN_MAX_AGE applies to sync
    # code only and is allowed alongside it.
    "defaults": {
        "ENGINE": _aorm_engine,
        **_server,
        "CONN_MAX_AGE": 60,
        "TEST": {"MIRROR": "default"},
    },
    # Health checks on (CONN_HEALTH_CHECKS): a connection the server dropped is
    # replaced before use.
    "checked": {
        "ENGINE": _aorm_engine,
        **_server,
        "OPTIONS": _pool,
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"MIRROR": "default"},
    },
    # Django's own backend on the same database: the reference behaviour.
    "stock": {"ENGINE": _stock_engine, **_server, "TEST": {"MIRROR": "default"}},
}

if DATABASE == "mysql":
    # The server's Unix socket: HOST "localhost" means it, for mysqlclient and for aorm.
    DATABASES["socket"] = {
        "ENGINE": _aorm_engine,
        **_server,
        "HOST": "localhost",
        "PORT": "",
        "OPTIONS": _pool,
        "TEST": {"MIRROR": "default"},
    }

if DATABASE == "sqlite":
    # Django's in-memory test database (shared cache), used through aorm.
    DATABASES["memory"] = {"ENGINE": _aorm_engine, "NAME": ":memory:"}
