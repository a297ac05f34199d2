"""A TCP proxy on a free loopback port that can go silent, for the stalled-network tests.

It runs its own event loop in a thread, so that it behaves the same whatever
the test's loop does. :meth:`StallingProxy.stall` stops all forwarding, in
both directions, on open connections and new ones: new connections are
accepted and never connected onward, nothing is closed (no FIN, no RST), bytes
received are held. :meth:`StallingProxy.resume` forwards what was held and
carries on. This is a silent network as the client's application sees it;
the client's kernel still sees a live peer (the proxy's kernel acknowledges
data and answers keepalive probes), which a real partition would not give it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["StallingProxy"]

T = TypeVar("T")


class StallingProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.accepted = 0  # client connections accepted
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy")
        self._flowing: asyncio.Event
        self._server: asyncio.Server
        self._handlers: set[asyncio.Task[None]] = set()

    def __enter__(self) -> StallingProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        """Forward nothing more, close nothing, until :meth:`resume`."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    async def _set_flowing(self, flowing: bool) -> None:
        (self._flowing.set if flowing else self._flowing.clear)()

    async def _handle(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.accepted += 1
        to_server = None
        try:
            await self._flowing.wait()  # stalled: accepted, and left without an answer
            server, to_server = await asyncio.open_connection(*self.target)
            pumps = {
                asyncio.ensure_future(self._pump(client, to_server)),
                asyncio.ensure_future(self._pump(server, to_client)),
            }
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass  # the proxy is closing, or a side went away: close both below
        finally:
            for writer in (to_client, to_server):
                if writer is not None:
                    writer.transport.abort()
            self._handlers.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy until end of file, holding everything while the proxy is stalled."""
        while True:
            data = await reader.read(65536)
            await self._flowing.wait()
            if not data:
                return
            writer.write(data)
            await writer.drain()

    def close(self) -> None:
        """Stop listening and drop every connection (aborted: an RST)."""
        if self._thread.is_alive():
            self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    async def _close(self) -> None:
        self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
