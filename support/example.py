"""The example project, examples/school: its ``students`` app is the one home of the seeds'
``Student`` model and of their two views, which the test suite, the benchmark and the soak
install.

Not part of the aorm package (nothing here is installed with it).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent / "examples" / "school"


def make_importable() -> None:
    """Put the example project on ``sys.path``, so that its ``students`` app imports.

    The settings modules that install the app call it: every process that loads them
    (pytest, and each server or worker a test or the benchmark starts) finds the app,
    whatever its ``PYTHONPATH``.
    """
    if str(PROJECT) not in sys.path:
        sys.path.append(str(PROJECT))
