"""Workload F: the seeds' views, served by uvicorn (aorm or stock Django, ``BENCH_DJANGO``)."""
