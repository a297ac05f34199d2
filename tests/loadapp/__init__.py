"""The project the ASGI load test serves: tests.settings, a small pool, instrumented views."""
