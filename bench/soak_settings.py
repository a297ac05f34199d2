"""Settings of the soak's server (bench/soak.py): the ASGI load test's settings (a named
pool of ``AORM_LOAD_POOL_MAX_SIZE`` connections, ``application_name`` from
``AORM_LOAD_APPLICATION_NAME``, 500s logged to stderr), the soak's views, and a short
``max_idle`` (``AORM_SOAK_MAX_IDLE`` seconds) so that the end of the run can show the
pool shrinking back to ``min_size``.
"""

import os

from tests.loadapp.settings import *  # noqa: F403
from tests.loadapp.settings import DATABASES

ROOT_URLCONF = "bench.soak_app"
MAX_IDLE = float(os.environ.get("AORM_SOAK_MAX_IDLE", "5"))

_options = DATABASES["default"]["OPTIONS"]
DATABASES = {
    **DATABASES,
    "default": {
        **DATABASES["default"],
        "OPTIONS": {**_options, "pool": {**_options["pool"], "max_idle": MAX_IDLE}},
    },
}
