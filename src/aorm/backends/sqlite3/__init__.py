"""SQLite: Django's ``django.db.backends.sqlite3``, with native async I/O inside the bridge."""
