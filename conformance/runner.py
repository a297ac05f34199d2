"""A DiscoverRunner that writes every test's outcome to a JSON file.

The file is named by ``AORM_CONFORMANCE_OUTPUT``: ``{"setup": {...},
"outcomes": {test id: {"outcome": ..., "detail": ...}}}``, the outcome being
one of ``passed``, ``failed``, ``error``, ``skipped``, ``expected_failure``,
``unexpected_success``. A test with a failing subtest is ``failed`` (or
``error``); errors outside any test (``setUpClass``, a module that does not
import) appear under unittest's ids for them.

Parallel runs report failures from worker processes by pickling them, which
needs ``tblib`` for tracebacks; without it Django's runner aborts the whole
run on the first failure. Workers here send the formatted traceback as text
instead, so no extra package is needed and no exception is unpicklable.
Two more worker-to-parent fixes keep every outcome on the right test id: errors
and skips of a whole class or module (``setUpClass``, ``tearDownClass``) are
sent with their own id, not the index of the last test run; and a skipped test
is counted as started even on Python versions whose unittest skips
``startTest`` for it (3.12.1), which would shift every later index.
"""

from __future__ import annotations

import json
import os
import pickle
import unittest
from typing import Any

from django.test.runner import (
    DiscoverRunner,
    ParallelTestSuite,
    RemoteTestResult,
    RemoteTestRunner,
)

__all__ = ["ConformanceRunner"]

# When a test reports several outcomes (subtests, errors in tearDown), the
# worst one is kept.
_RANK = {
    "passed": 0,
    "expected_failure": 1,
    "skipped": 2,
    "unexpected_success": 3,
    "failed": 4,
    "error": 5,
}

_DETAIL_LIMIT = 20_000


class RemoteFailure(AssertionError):
    """A failed assertion in a worker process; its text is the formatted traceback."""


class RemoteError(Exception):
    """An error in a worker process; its text is the formatted traceback."""


class _SubTestRecord:
    """What the parent process needs of a subtest: its id and description."""

    def __init__(self, subtest: Any) -> None:
        self._id = subtest.id()
        self._description = str(subtest)
        self.failureException = subtest.failureException

    def id(self) -> str:
        return str(self._id)

    def __str__(self) -> str:
        return self._description

    def shortDescription(self) -> None:
        return None


def _traceback_text(result: Any, test: Any, err: Any) -> str:
    """unittest's formatting of a traceback (Django's worker result disables it)."""
    return str(unittest.TestResult._exc_info_to_string(result, err, test))  # type: ignore[attr-defined]


def _failure_exception(test: Any) -> type[BaseException]:
    return getattr(test, "failureException", None) or AssertionError


def _is_holder(test: Any) -> bool:
    """Whether ``test`` is unittest's stand-in for a class or module fixture."""
    return isinstance(test, unittest.suite._ErrorHolder)  # type: ignore[attr-defined]


class _TextOnlyRemoteResult(RemoteTestResult):
    """Django's worker-side result, with exceptions replaced by their traceback text."""

    _started: Any = None

    def _as_text(self, test: Any, err: Any) -> Any:
        text = _traceback_text(self, test, err)
        kind = RemoteFailure if issubclass(err[0], _failure_exception(test)) else RemoteError
        return (kind, kind(text), None)

    def startTest(self, test: Any) -> None:
        super().startTest(test)
        self._started = test

    def addError(self, test: Any, err: Any) -> None:
        err = self._as_text(test, err)
        if _is_holder(test):
            self.events.append(("addFixtureError", test.id(), err))
            return
        super().addError(test, err)

    def addSkip(self, test: Any, reason: str) -> None:
        if _is_holder(test):
            self.events.append(("addFixtureSkip", test.id(), reason))
            return
        if test is not self._started:
            self.startTest(test)
        super().addSkip(test, reason)

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, self._as_text(test, err))

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        if err is not None:
            err = self._as_text(test, err)
            try:
                pickle.loads(pickle.dumps(subtest))
            except Exception:
                subtest = _SubTestRecord(subtest)
        super().addSubTest(test, subtest, err)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, self._as_text(test, err))


class _TextOnlyRemoteRunner(RemoteTestRunner):
    resultclass = _TextOnlyRemoteResult


class ConformanceParallelTestSuite(ParallelTestSuite):
    runner_class = _TextOnlyRemoteRunner

    def handle_event(self, result: Any, tests: Any, event: Any) -> None:
        if event[0] == "addFixtureError":
            result.addError(unittest.suite._ErrorHolder(event[1]), event[2])  # type: ignore[attr-defined]
        elif event[0] == "addFixtureSkip":
            result.addSkip(unittest.suite._ErrorHolder(event[1]), event[2])  # type: ignore[attr-defined]
        else:
            super().handle_event(result, tests, event)


class _Recording:
    """Mixed into the parent process's TextTestResult: records outcomes by test id."""

    outcomes: dict[str, dict[str, str]]

    def _record(self, test: Any, outcome: str, detail: str = "") -> None:
        if not hasattr(self, "outcomes"):
            self.outcomes = {}
        test_id = test.id()
        current = self.outcomes.get(test_id)
        if current is None or _RANK[outcome] > _RANK[current["outcome"]]:
            self.outcomes[test_id] = {"outcome": outcome, "detail": detail[-_DETAIL_LIMIT:]}

    def _detail(self, test: Any, err: Any) -> str:
        if isinstance(err[1], RemoteFailure | RemoteError):
            return str(err[1])
        return _traceback_text(self, test, err)

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)  # type: ignore[misc]
        self._record(test, "passed")

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)  # type: ignore[misc]
        self._record(test, "error", self._detail(test, err))

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)  # type: ignore[misc]
        self._record(test, "failed", self._detail(test, err))

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)  # type: ignore[misc]
        if err is not None:
            failed = issubclass(err[0], _failure_exception(test))
            detail = f"{subtest}\n{self._detail(test, err)}"
            self._record(test, "failed" if failed else "error", detail)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)  # type: ignore[misc]
        self._record(test, "skipped", reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)  # type: ignore[misc]
        self._record(test, "expected_failure")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)  # type: ignore[misc]
        self._record(test, "unexpected_success")


class ConformanceRunner(DiscoverRunner):
    parallel_test_suite = ConformanceParallelTestSuite

    def get_resultclass(self) -> Any:
        base = super().get_resultclass() or unittest.TextTestResult
        return type(f"Recording{base.__name__}", (_Recording, base), {})

    def run_suite(self, suite: Any, **kwargs: Any) -> Any:
        result = super().run_suite(suite, **kwargs)
        output = os.environ.get("AORM_CONFORMANCE_OUTPUT")
        if output:
            report = {"setup": _setup(), "outcomes": getattr(result, "outcomes", {})}
            with open(output, "w") as file:
                json.dump(report, file, indent=1, sort_keys=True)
        return result


def _setup() -> dict[str, Any]:
    """What the run was made of, for the driver to check that aorm was really in use."""
    import django
    from django.apps import apps
    from django.db import connections
    from django.db.models import query

    return {
        "django": django.get_version(),
        "installed_apps": [config.name for config in apps.get_app_configs()],
        "backends": {alias: type(connections[alias]).__module__ for alias in connections},
        "queryset_sync_to_async": getattr(query, "sync_to_async", None).__module__,
    }
