"""aorm's database backends: Django's own, plus native async I/O inside the bridge."""
