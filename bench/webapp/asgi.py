"""``uvicorn bench.webapp.asgi:application``, with BENCH_DJANGO=aorm or stock."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.djsettings")
application = get_asgi_application()
