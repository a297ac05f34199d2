"""A small HTTP/1.1 load client on raw asyncio streams: bounded, loopback, able to hang up.

Each request opens its own connection (``Connection: close``), so hanging up
mid-request is exactly what a browser that goes away does: the socket is
closed (``transport.abort()``) while the server is still working, and the
ASGI server tells the application ``http.disconnect``.

- :func:`fetch` sends one GET and returns the :class:`Response`, or ``None``
  when it hung up first: ``hang_up_after`` seconds after the request was sent,
  or after the response stream carried the ``signal`` bytes (a server that
  streams a first line when it reaches the point to interrupt).
- :func:`run_load` sends many requests through a fixed number of concurrent
  workers and returns one :class:`Outcome` per request, in request order.

Nothing here retries, and every wait is bounded: a request that takes longer
than its ``timeout`` raises ``TimeoutError``, a connection error propagates,
so that the caller's assertions see them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome", "Request", "Response", "TruncatedResponse", "fetch", "run_load"]


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Request:
    """A GET. ``hang_up_after``: the client hangs up that many seconds after sending it,
    or, with ``signal``, after the response stream has carried those bytes."""

    path: str
    hang_up_after: float | None = None
    signal: bytes | None = None


@dataclass
class Outcome:
    """What happened to one request; times are the event loop's clock."""

    request: Request
    started: float
    ended: float
    response: Response | None = None  # None: the client hung up before the response was complete
    error: BaseException | None = None  # the request failed on the client's side

    @property
    def hung_up(self) -> bool:
        return self.response is None and self.error is None

    @property
    def status(self) -> int | None:
        return None if self.response is None else self.response.status


class TruncatedResponse(ValueError):
    """The connection ended before the whole response came (a server that died mid-request)."""


def _parse(raw: bytes) -> Response:
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        raise TruncatedResponse(f"incomplete HTTP response: {raw[:200]!r}")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = status_line.split(" ", 2)
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x response: {status_line!r}")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif "content-length" in headers and len(body) < int(headers["content-length"]):
        raise TruncatedResponse(
            f"body of {len(body)} bytes, Content-Length {headers['content-length']}"
        )
    elif "content-length" in headers and len(body) != int(headers["content-length"]):
        raise ValueError(f"body of {len(body)} bytes, Content-Length {headers['content-length']}")
    return Response(int(status), headers, body)


def _dechunk(data: bytes) -> bytes:
    body = bytearray()
    while True:
        size_line, separator, data = data.partition(b"\r\n")
        if not separator:
            raise TruncatedResponse("truncated chunked body")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        if len(data) < size + 2:
            raise TruncatedResponse("truncated chunked body")
        body += data[:size]
        data = data[size + 2 :]


async def fetch(
    host: str,
    port: int,
    path: str,
    *,
    hang_up_after: float | None = None,
    signal: bytes | None = None,
    timeout: float = 30.0,
) -> Response | None:
    """GET ``path``; the response, or None if the client hung up first.

    The client hangs up ``hang_up_after`` seconds after sending the request, or,
    with ``signal``, after the response has carried ``signal``: whatever the
    server was doing then is interrupted by the closed connection.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode("ascii"))
            await writer.drain()
            received = bytearray()
            if signal is not None and hang_up_after is not None:
                while signal not in received:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return _parse(bytes(received))  # ended without the signal
                    received += chunk
            # The server closes the connection after the response (Connection: close).
            rest = asyncio.ensure_future(reader.read())
            try:
                done, _ = await asyncio.wait({rest}, timeout=hang_up_after)
            finally:
                if not rest.done():
                    rest.cancel()
            if rest not in done:
                return None  # hang up: the transport is aborted below, mid-response
            return _parse(bytes(received + rest.result()))
        finally:
            writer.transport.abort()


async def run_load(
    host: str,
    port: int,
    requests: Sequence[Request],
    *,
    concurrency: int,
    timeout: float = 30.0,
    on_outcome: Callable[[Outcome, int], object] | None = None,
) -> list[Outcome]:
    """Send ``requests`` through ``concurrency`` workers; one outcome per request, in order.

    ``on_outcome(outcome, completed)`` is called as each request ends.
    """
    loop = asyncio.get_running_loop()
    outcomes: list[Outcome | None] = [None] * len(requests)
    queue = iter(enumerate(requests))
    completed = 0

    async def worker() -> None:
        nonlocal completed
        for index, request in queue:  # shared iterator: each request is taken once
            outcome = Outcome(request, loop.time(), 0.0)
            try:
                outcome.response = await fetch(
                    host,
                    port,
                    request.path,
                    hang_up_after=request.hang_up_after,
                    signal=request.signal,
                    timeout=timeout,
                )
            except Exception as exc:
                outcome.error = exc
            outcome.ended = loop.time()
            outcomes[index] = outcome
            completed += 1
            if on_outcome is not None:
                on_outcome(outcome, completed)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [outcome for outcome in outcomes if outcome is not None]
