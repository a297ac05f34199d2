"""``uvicorn bench.webapp.asgi:application``: workload F's server, with BENCH_DJANGO=aorm or
stock; the soak's too, with DJANGO_SETTINGS_MODULE=bench.soak_settings."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.djsettings")
application = get_asgi_application()
