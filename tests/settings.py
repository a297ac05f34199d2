"""Settings for aorm's own test suite: real databases, chosen by AORM_TEST_DATABASE."""

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

_POSTGRES = {
    "NAME": "aorm",
    "USER": os.environ.get("AORM_PGUSER", "postgres"),
    "HOST": os.environ.get("AORM_PGHOST", "127.0.0.1"),
    "PORT": os.environ.get("AORM_PGPORT", "5432"),
}

DATABASES = {
    # The alias under test: aorm's backend with an async pool.
    "default": {
        "ENGINE": "aorm.backends.postgresql",
        **_POSTGRES,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 8, "timeout": 10}},
        "TEST": {"NAME": "test_aorm"},
    },
    # aorm without a pool: a connection per operation.
    "unpooled": {
        "ENGINE": "aorm.backends.postgresql",
        **_POSTGRES,
        "TEST": {"MIRROR": "default"},
    },
    # Django's own backend on the same database: the reference behaviour.
    "stock": {
        "ENGINE": "django.db.backends.postgresql",
        **_POSTGRES,
        "TEST": {"MIRROR": "default"},
    },
}
