"""aorm: Django's ORM, natively asynchronous.

Add ``"aorm"`` to ``INSTALLED_APPS`` and use an aorm backend
(``aorm.backends.postgresql``); Django's async ORM API then runs on the event
loop, on async drivers, with no thread pool in between.
"""

from aorm._operation import await_, run
from aorm._pool import PoolStats, PoolTimeout, pool_stats
from aorm._relations import afetch
from aorm._transaction import aget_autocommit, aget_rollback, aon_commit, aset_rollback
from aorm.bridge import BridgeError

__all__ = [
    "BridgeError",
    "PoolStats",
    "PoolTimeout",
    "afetch",
    "aget_autocommit",
    "aget_rollback",
    "aon_commit",
    "aset_rollback",
    "await_",
    "pool_stats",
    "run",
]
__version__ = "0.1.0"
