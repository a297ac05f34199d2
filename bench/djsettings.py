"""Django settings for the Django-based contenders; ``BENCH_DJANGO`` picks the backend.

One settings module, one process per contender: only ``ENGINE`` and
``INSTALLED_APPS`` differ between stock Django, aorm and django-async-backend.

- ``BENCH_DATABASE``: ``postgresql`` (default) or ``sqlite`` (the file
  ``common.SQLITE_FILE``, no OPTIONS for either backend).
- ``BENCH_POOL``: ``sized`` (default), every contender gets the same pool
  (``OPTIONS["pool"]``, min = max = POOL_SIZE); ``unset`` (workload F0: the
  settings a user writes first), no pool option, and the middleware
  ``django-admin startproject`` writes, with the apps it uses.
- ``BENCH_DRIVER_OPTIONS``: JSON merged into PostgreSQL's ``OPTIONS``
  (``bench.profile_a`` measures ``server_side_binding`` and
  ``prepare_threshold`` with it).
"""

import json
import os

from support import example

from bench import common

# Workload F serves the seeds' Student model and views: the example app's `students` app.
example.make_importable()

MODE = os.environ.get("BENCH_DJANGO", "stock")
DATABASE = os.environ.get("BENCH_DATABASE", "postgresql")
POOL = os.environ.get("BENCH_POOL", "sized")
_ENGINES = {
    "postgresql": {
        "stock": ("django.db.backends.postgresql", []),
        "aorm": ("aorm.backends.postgresql", ["aorm"]),
        "dab": ("django_async_backend.db.backends.postgresql", ["django_async_backend"]),
    },
    "sqlite": {
        "stock": ("django.db.backends.sqlite3", []),
        "aorm": ("aorm.backends.sqlite3", ["aorm"]),
    },
}[DATABASE]
_engine, _apps = _ENGINES[MODE]

SECRET_KEY = "aorm-bench"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [*_apps, "bench.djapp", "students"]
# No middleware in A-E and F: F measures the ORM under Django's ASGI handler.
MIDDLEWARE: list[str] = []
if POOL == "unset":  # F0: what `django-admin startproject` writes (with the apps it uses)
    INSTALLED_APPS = [*example.STARTPROJECT_APPS, *INSTALLED_APPS]
    MIDDLEWARE = example.STARTPROJECT_MIDDLEWARE
ROOT_URLCONF = "bench.webapp.urls"
if DATABASE == "sqlite":
    DATABASES = {"default": {"ENGINE": _engine, "NAME": common.SQLITE_FILE}}
else:
    DATABASES = {
        "default": {
            "ENGINE": _engine,
            "NAME": common.DBNAME,
            "USER": common.USER,
            "HOST": common.HOST,
            "PORT": str(common.PORT),
            "OPTIONS": {},
        }
    }
    DATABASES["default"]["OPTIONS"].update(
        json.loads(os.environ.get("BENCH_DRIVER_OPTIONS", "{}"))
    )
    if POOL == "sized":
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": common.POOL_SIZE,
            "max_size": common.POOL_SIZE,
            "timeout": 30,
        }
# A failed request's exception on the server's stderr (bench/run.py reports it).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False}},
}
# django-async-backend warns that pools are unsafe under WSGI; we run under asyncio only.
ASYNC_BACKEND_DISABLE_POOL_WARNING = True
