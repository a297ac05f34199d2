"""A SQLite writer killed with SIGKILL inside ``async with transaction.atomic()``.

Real processes on a SQLite file of the test's own in WAL mode (aorm's
default); :mod:`tests.sqlite_writer` is the writer:

- the committer commits :data:`COMMITS` transactions, each acknowledged by a
  line on stdout once its block has exited, then opens one more block, inserts
  many rows in it (enough for uncommitted pages to reach the WAL file), says
  so, and waits;
- a second process then inserts a row outside any transaction: it has to wait
  for the write lock the committer holds;
- the committer is killed with SIGKILL, in its block.

Afterwards ``PRAGMA integrity_check`` says ``ok``, every acknowledged commit is
in the table, no row of the killed transaction is, and the second process's
write succeeded, after the kill.
"""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.server import ROOT

pytestmark = pytest.mark.skipif(
    settings.DATABASE != "sqlite", reason="SQLite crash safety: the suite's SQLite run"
)

COMMITS = 50
HOLD = 0.5  # seconds the second process is left waiting for the lock before the kill
LINE_TIMEOUT = 60.0  # the longest wait for a line (process start-up included)


class Writer:
    """A :mod:`tests.sqlite_writer` process whose stdout lines arrive in a queue."""

    def __init__(self, database: Path, *args: str) -> None:
        environ = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "AORM_TEST_DATABASE": "sqlite",
            "AORM_TEST_USE_NAME": str(database),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sqlite_writer", *args],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def next_line(self) -> str:
        try:
            line = self.lines.get(timeout=LINE_TIMEOUT)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f"no line from {self.proc.args!r} in {LINE_TIMEOUT}s") from None
        if line is None:
            raise AssertionError(f"{self.proc.args!r} ended: {self.finish()}")
        return line

    def finish(self) -> tuple[int, str]:
        """Exit code and stderr, once the process has ended (bounded)."""
        try:
            self.proc.wait(timeout=LINE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=LINE_TIMEOUT)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        with self.proc.stdout, self.proc.stderr:
            return self.proc.returncode, self.proc.stderr.read()


def test_a_writer_killed_inside_atomic_loses_only_its_open_transaction(tmp_path: Path) -> None:
    database = tmp_path / "crash.sqlite3"
    migrate = Writer(database, "migrate")
    assert migrate.finish() == (0, "")

    committer = Writer(database, "committer", str(COMMITS))
    second = None
    try:
        acknowledged = []
        while (line := committer.next_line()).startswith("committed "):
            acknowledged.append(int(line.removeprefix("committed ")))
        assert acknowledged == list(range(COMMITS))
        inside, wal_before, wal_inside = line.split()
        assert inside == "inside"
        # The open transaction's pages went to the WAL file: recovery must ignore them.
        assert int(wal_inside) > int(wal_before), (wal_before, wal_inside)

        second = Writer(database, "second")
        assert second.next_line() == "writing"
        time.sleep(HOLD)  # leaves the second process time to wait on the lock
        assert second.lines.empty() and second.proc.poll() is None, "it did not wait"

        committer.proc.send_signal(signal.SIGKILL)
        assert committer.finish()[0] == -signal.SIGKILL
        assert second.next_line() == "written"
        assert second.finish() == (0, "")
    finally:
        for writer in (committer, second):
            if writer is not None and writer.proc.poll() is None:
                writer.proc.kill()
                writer.finish()

    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        names = [name for (name,) in db.execute("SELECT name FROM students_student ORDER BY id")]
    assert names == [f"committed-{i}" for i in range(COMMITS)] + ["second"]
