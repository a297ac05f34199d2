"""The load test's ASGI application (uvicorn and daphne import it in their own process)."""

import os

from django.core.asgi import get_asgi_application

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.loadapp.settings"
application = get_asgi_application()
