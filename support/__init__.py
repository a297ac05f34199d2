"""What the test suite, the benchmark and the conformance run share: the machine's services,
the example app the seeds' model and views live in, and an HTTP load client.

Not part of the aorm package (nothing here is installed with it).
"""
