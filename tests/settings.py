"""Settings for aorm's own test suite: real databases, chosen by AORM_TEST_DATABASE.

``AORM_TEST_DATABASE`` is ``postgresql`` (default), ``sqlite`` or ``mysql``.
``AORM_TEST_NAME`` names the test database, so that several runs can share a
server.
"""

import os

SECRET_KEY = "aorm-tests"
USE_TZ = True
TIME_ZONE = "Europe/Paris"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "aorm",
    "tests.app",
]
ROOT_URLCONF = "tests.app.urls"
ALLOWED_HOSTS = ["*"]

DATABASE = os.environ.get("AORM_TEST_DATABASE", "postgresql")
TEST_NAME = os.environ.get("AORM_TEST_NAME", "test_aorm")

if DATABASE == "postgresql":
    _server = {
        "NAME": "postgres",
        "USER": os.environ.get("AORM_PGUSER", "postgres"),
        "HOST": os.environ.get("AORM_PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("AORM_PGPORT", "5432"),
    }
    _aorm_engine = "aorm.backends.postgresql"
    _stock_engine = "django.db.backends.postgresql"
    _pool = {"pool": {"min_size": 1, "max_size": 8, "timeout": 10}}
else:
    raise ValueError(f"AORM_TEST_DATABASE={DATABASE!r}: expected postgresql")

DATABASES = {
    # The alias under test: aorm's backend, pooled where the database pools.
    "default": {
        "ENGINE": _aorm_engine,
        **_server,
        "OPTIONS": _pool,
        "TEST": {"NAME": TEST_NAME},
    },
    # aorm without a pool: a connection per operation.
    "unpooled": {"ENGINE": _aorm_engine, **_server, "TEST": {"MIRROR": "default"}},
    # Django's own backend on the same database: the reference behaviour.
    "stock": {"ENGINE": _stock_engine, **_server, "TEST": {"MIRROR": "default"}},
}
