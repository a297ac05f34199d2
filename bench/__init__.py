"""aorm's benchmark against its peers: ``make bench`` (see bench/README.md)."""
