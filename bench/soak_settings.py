"""Settings of the soak's server (bench/soak.py): the seeds' ``students`` app and the soak's
views on the soak's PostgreSQL database, with the pool the soak sizes.

The pool: ``max_size`` :data:`bench.soak.POOL_MAX_SIZE`, a short ``max_idle``
(:data:`bench.soak.MAX_IDLE`) so that the end of the run can show it shrinking back to
``min_size``, and sessions named by ``AORM_SOAK_APPLICATION_NAME`` so that the soak finds
them in ``pg_stat_activity``. Every log record at WARNING or above goes to stderr, which
the soak requires to stay empty.
"""

import os

from support import example

from bench.soak import DATABASE, MAX_IDLE, PG, POOL_MAX_SIZE

example.make_importable()

SECRET_KEY = "aorm-soak"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["aorm", "students"]
# No middleware: what the soak watches is aorm's (connections, greenlets, tasks).
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.soak_app"

DATABASES = {
    "default": {
        "ENGINE": "aorm.backends.postgresql",
        "NAME": DATABASE,
        "USER": PG["user"],
        "HOST": PG["host"],
        "PORT": PG["port"],
        "OPTIONS": {
            "pool": {
                "min_size": 1,
                "max_size": POOL_MAX_SIZE,
                "timeout": 10,
                "max_idle": MAX_IDLE,
            },
            "application_name": os.environ["AORM_SOAK_APPLICATION_NAME"],
        },
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "loggers": {
        "django.request": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
