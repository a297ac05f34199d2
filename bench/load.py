"""A small, bounded HTTP/1.1 load generator on raw asyncio streams (workload F).

``concurrency`` keep-alive connections, each sending its next GET as soon as
the previous response is complete (a closed loop), until ``requests``
responses have arrived or ``time_limit`` seconds have passed. It parses just
enough HTTP to find each response's end (Content-Length), so its own cost per
request stays a few tens of microseconds: on a 2-core machine the client
shares the CPU with the server, and httpx would cost the server more than the
ORM does. Only loopback targets: it refuses any other host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field

# Seconds before a request without a response counts as failed.
REQUEST_TIMEOUT = 30.0


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise OSError(f"not an HTTP response: {head[:60]!r}")
    status = int(head[9:12])
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        lowered = line.lower()
        if lowered.startswith(b"content-length:"):
            length = int(line[15:])
        elif lowered.startswith(b"transfer-encoding:") and b"chunked" in lowered:
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length) if length else b""
    # No Content-Length (Django sets none without CommonMiddleware): chunked.
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent
            return status, b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])


async def run(
    host: str,
    port: int,
    path: str,
    requests: int,
    concurrency: int,
    time_limit: float = 120.0,
) -> LoadResult:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"load targets loopback only, not {host}")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    result = LoadResult()
    remaining = requests
    deadline = time.perf_counter() + time_limit

    async def client() -> None:
        nonlocal remaining, last
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                start = time.perf_counter()
                try:
                    writer.write(request)
                    # A response that never comes fails the request (REQUEST_TIMEOUT).
                    wait = min(REQUEST_TIMEOUT, max(0.0, deadline - time.perf_counter()))
                    async with asyncio.timeout(wait):
                        status, body = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    result.errors += 1
                    result.first_error = result.first_error or repr(exc) or type(exc).__name__
                    return
                last = time.perf_counter()
                if status != 200:
                    result.errors += 1
                    result.first_error = result.first_error or f"HTTP {status}: {body[:200]!r}"
                    continue
                result.latencies.append(time.perf_counter() - start)
                result.requests += 1
        finally:
            writer.close()

    start = last = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    # Until the last response: a request that timed out fails without
    # stretching the run.
    result.seconds = last - start
    return result
