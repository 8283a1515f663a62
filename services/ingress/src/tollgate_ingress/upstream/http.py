"""The HTTP client ingress reaches upstreams with: one aiohttp connection pool, used two ways.

A plain (non-streamed) call posts through aiohttp directly (`post`): the request goes out
and the whole body comes back with nothing built around them, which costs about a third
of the client CPU the same call costs through httpx's request and response models
(`python -m tollgate_bench.upstream_client`: 177 against 530 us per call, medians).
Streams, and everything else that wants httpx's API (`build_request`,
`send(stream=True)`, httpx-sse), go through httpx over the same pool (httpx-aiohttp's
transport), so both kinds of call share connections.

Both report an unreachable upstream the same way (`unreachable`): refused or reset is a 502,
a timeout a 504, whichever client raised it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from multidict import CIMultiDictProxy

# httpx's default keep-alive expiry, which this pool had before it was shared.
_KEEPALIVE_S = 5.0


class UpstreamClient(httpx.AsyncClient):
    """httpx's API over an aiohttp session, and that session (`session`) for `post`."""

    def __init__(self, *, max_connections: int, timeout: float) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=max_connections,
                keepalive_timeout=_KEEPALIVE_S,
                # The CA bundle httpx would verify with (certifi), not the system's.
                ssl=httpx.create_ssl_context(trust_env=False),
            ),
            trust_env=False,
        )
        super().__init__(transport=AiohttpTransport(client=self.session), timeout=timeout)


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole upstream answer: status, headers and the (decompressed) body."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class UnreachableError(Exception):
    """No answer: the connection was refused or reset, or the upstream timed out."""

    def __init__(self, timed_out: bool, reason: str) -> None:
        super().__init__(reason)
        self.timed_out = timed_out
        self.reason = reason


def unreachable(exc: BaseException) -> UnreachableError:
    """Classify a failed exchange from either client: a timeout, or unreachable."""
    # httpx-aiohttp reports a refused connection as httpx.ConnectTimeout; the aiohttp error
    # it wraps (an OSError that is not a timeout) tells the two apart.
    cause = exc.__cause__ if isinstance(exc, httpx.HTTPError) else exc
    refused = isinstance(cause, OSError) and not isinstance(cause, TimeoutError)
    timed_out = not refused and isinstance(exc, httpx.TimeoutException | TimeoutError)
    return UnreachableError(timed_out, type(exc).__name__)


async def post(
    client: UpstreamClient,
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,
) -> Reply:
    """POST `content` and read the whole answer; raises UnreachableError."""
    # httpx's single timeout, as its transport maps it: connect, each read, and the wait
    # for a pooled connection.
    limit = aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout, connect=timeout)
    try:
        async with client.session.post(
            url, data=content, headers=headers, timeout=limit, allow_redirects=False
        ) as resp:
            body = await resp.read()
            reply_headers: CIMultiDictProxy[str] = resp.headers
            return Reply(resp.status, reply_headers, body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise unreachable(exc) from exc
