"""django-debug-toolbar's SQL panel for async views on aorm's backends.

The toolbar's SQL panel records queries by replacing ``cursor()`` on each
``DatabaseWrapper`` of ``connections.all()`` when a request starts. In async
code under aorm those are the request task's own wrappers, on which no
statement runs (each awaited operation uses a pooled wrapper of its own); for
an async request the panel even does it in a worker thread, whose wrappers
stock Django's ``sync_to_async`` queries use. So the stock panel shows no
queries for an async view under aorm. :class:`SQLPanel` is the
toolbar's panel plus an ``execute_wrapper()`` on the task's wrapper of each
aorm alias, which aorm applies to every operation of the request; each
statement is recorded by the toolbar's own cursor mixin, with the same
details (SQL, parameters, duration, stack trace, transaction). Replace the
toolbar's panel with it::

    DEBUG_TOOLBAR_PANELS = [
        ...,
        "aorm.contrib.debug_toolbar.SQLPanel",   # instead of debug_toolbar.panels.sql.SQLPanel
        ...,
    ]

It relies on the toolbar's SQL tracking module (django-debug-toolbar 6 to 8).
"""

from __future__ import annotations

import contextlib
from typing import Any

from debug_toolbar.panels.sql import SQLPanel as ToolbarSQLPanel
from debug_toolbar.panels.sql import tracking
from django.db import connections

from aorm.backends.base import native_aliases

__all__ = ["SQLPanel"]


class SQLPanel(ToolbarSQLPanel):  # type: ignore[misc]
    """The toolbar's SQL panel, seeing the statements of aorm's async operations too."""

    async def aenable_instrumentation(self) -> None:
        """For an async request: the toolbar's (in a thread), then the request task's wrappers."""
        await super().aenable_instrumentation()  # type: ignore[no-untyped-call]
        self._aorm_wrappers = contextlib.ExitStack()
        for alias in sorted(native_aliases()):
            self._aorm_wrappers.enter_context(
                connections[alias].execute_wrapper(self._aorm_record)
            )

    def disable_instrumentation(self) -> None:
        wrappers = getattr(self, "_aorm_wrappers", None)
        if wrappers is not None:
            wrappers.close()
        super().disable_instrumentation()  # type: ignore[no-untyped-call]

    def _aorm_record(
        self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        """Record one statement of an operation, as the toolbar's cursor wrapper does."""
        cursor = context["cursor"]
        if isinstance(cursor, tracking.DjDTCursorWrapperMixin):
            return execute(sql, params, many, context)  # the toolbar's own wrapper records it
        mixin = (
            tracking.NormalCursorMixin
            if tracking.allow_sql.get()
            else tracking.ExceptionCursorMixin
        )
        recorder = tracking.patch_cursor_wrapper_with_mixin(type(cursor), mixin)(  # type: ignore[no-untyped-call]
            cursor.cursor, context["connection"], self
        )
        return recorder._record(
            lambda sql, params: execute(sql, params, many, context), sql, params
        )
