"""Workload F: the seeds' views, served by uvicorn (aorm or stock Django, ``BENCH_DJANGO``),
on the seeds' ``Student`` model of the example app's ``students`` app."""
