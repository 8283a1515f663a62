"""A round-robin TCP front over the ingress replicas, so clients of a scaled-out stack see
one URL (`python -m tollgate_devstack.front --port 4000 --backend 4001 --backend 4002`).

Each client connection goes to the next replica; a replica that refuses the connection
(killed, restarting) is skipped for that connection, so a client keeps being served while
one replica is down. It moves bytes only: HTTP keep-alive connections stay on the replica
they were opened on. A development tool: in Kubernetes a Service does this.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger("tollgate_devstack.front")

CONNECT_TIMEOUT_S = 2.0
CHUNK = 64 * 1024


class RoundRobin:
    """Hands out backends in turn; `order()` is this connection's try list."""

    def __init__(self, backends: Sequence[tuple[str, int]]) -> None:
        if not backends:
            raise ValueError("at least one backend")
        self.backends = list(backends)
        self._next = itertools.cycle(range(len(self.backends)))

    def order(self) -> list[tuple[str, int]]:
        first = next(self._next)
        return self.backends[first:] + self.backends[:first]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def connect_first(
    order: Sequence[tuple[str, int]],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """The first backend in `order` that accepts a connection."""
    for host, port in order:
        try:
            return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError):
            log.info("backend %s:%d refused; trying the next", host, port)
    return None


def handler(
    rr: RoundRobin,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream = await connect_first(rr.order())
        if upstream is None:
            client_w.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
                b"content-length: 27\r\nconnection: close\r\n\r\nno ingress replica answers\n"
            )
            with contextlib.suppress(Exception):
                await client_w.drain()
            await _close(client_w)
            return
        up_r, up_w = upstream
        try:
            await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
        finally:
            await _close(up_w)
            await _close(client_w)

    return handle


async def serve(port: int, backends: Sequence[int], host: str = "127.0.0.1") -> None:
    rr = RoundRobin([("127.0.0.1", b) for b in backends])
    server = await asyncio.start_server(handler(rr), host, port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    log.info("front on %s:%d -> %s", host, port, ", ".join(map(str, backends)))
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate_devstack.front")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", type=int, action="append", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    asyncio.run(serve(args.port, args.backend, args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
