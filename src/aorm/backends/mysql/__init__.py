"""MySQL and MariaDB: Django's mysql backend, with native async I/O inside the bridge."""
