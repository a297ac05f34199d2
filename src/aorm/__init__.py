"""aorm: Django's ORM, natively asynchronous.

Add ``"aorm"`` to ``INSTALLED_APPS`` and use an aorm backend
(``aorm.backends.postgresql``); Django's async ORM API then runs on the event
loop, on async drivers, with no thread pool in between.
"""

from aorm._scope import run
from aorm.bridge import BridgeError, await_

__all__ = ["BridgeError", "await_", "run"]
__version__ = "0.1.0"
