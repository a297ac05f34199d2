"""The example project, examples/school: its ``students`` app is the one home of the seeds'
``Student`` model and of their two views, which the test suite, the benchmark and the soak
install.

Not part of the aorm package (nothing here is installed with it).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent / "examples" / "school"


def make_importable() -> None:
    """Put the example project on ``sys.path``, so that its ``students`` app imports.

    The settings modules that install the app call it: every process that loads them
    (pytest, and each server or worker a test or the benchmark starts) finds the app,
    whatever its ``PYTHONPATH``.
    """
    if str(PROJECT) not in sys.path:
        sys.path.append(str(PROJECT))


# What `django-admin startproject` writes: the settings a user starts from (the
# benchmark's workload F0, the tests of Django's own middleware).
STARTPROJECT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
]
STARTPROJECT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
