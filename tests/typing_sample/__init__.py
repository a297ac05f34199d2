"""A tiny Django project that tests/test_typing.py type-checks with mypy (never run)."""
