"""Django's own test suite, run against aorm's backends: ``make conformance``.

``run`` is the driver: it fetches the test suite of the installed Django from
its source distribution and, for each database (PostgreSQL, SQLite), runs the
chosen labels on Django's own backend (the baseline, cached per Django version
and database) and on aorm's, and fails when a test that passes on Django's
backend fails, errors, is skipped or does not run on aorm's. ``launch`` starts
Django's ``tests/runtests.py`` with extra always-installed apps (``aorm``);
``runner`` records every test's outcome as JSON; ``settings_<database>_stock``
and ``settings_<database>_aorm`` are the configurations, built from
``_settings``.
"""
