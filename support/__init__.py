"""What the test suite, the benchmark and the conformance run share: the machine's services.

Not part of the aorm package (nothing here is installed with it).
"""
