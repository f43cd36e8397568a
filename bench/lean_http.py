"""A lean HTTP/1.1 client for the benchmarks' load generators: one keep-alive connection per
client, requests encoded to bytes once (before the clock starts), each answer parsed by httptools
(the parser uvicorn uses) straight from the socket's bytes.

    connection = await LeanConnection.open("127.0.0.1", 8000, {"Authorization": "Bearer ..."})
    request = connection.request_bytes("POST", "/persons", body)   # bytes, reusable
    response = await connection.send(request)                       # status, headers, body
    await connection.close()

What it does not do, it refuses loudly (``ProtocolError``): an answer the parser rejects, an
answer whose end is not known from its head (neither ``Content-Length`` nor chunked: it would end
only when the server closes), bytes the server sends while no request is waiting, an upgrade,
a connection closed before the answer ended. Chunked answers are decoded by the parser. An
answer that asks to close the connection (``Connection: close``) is returned, and the next
request opens a new connection; so does a request after the server closed an idle connection
(uvicorn closes those after 5 s), which ``reconnects`` counts. One request at a time per
connection: this is a load generator's client, not a general one.

httpx does far more for each request (a request and response object, header normalisation, its
transport's state machines); at the API's few milliseconds a command that was a quarter of the
CPU a command costs on two cores, taken from the server being measured.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools

_NO_BODY_STATUSES = frozenset({204, 304})


class ProtocolError(Exception):
    """The server's bytes were not an answer this client can take: never retried, always raised."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]  # as sent (names in the server's case), in order
    body: bytes
    keep_alive: bool

    def header(self, name: str) -> bytes | None:
        """The first header called ``name`` (any case), or None."""
        wanted = name.lower().encode()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


class _Protocol(asyncio.Protocol):
    """Feeds the socket's bytes to httptools; completes the waiting request's future."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.failure: Exception | None = None  # a protocol error seen while no request waited
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._framed = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self._fail(ProtocolError(f"the server sent {len(data)} bytes while no request was waiting: {data[:80]!r}"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            # A callback's ProtocolError reaches here as httptools' callback error, with it as context.
            refused = e.__context__ if isinstance(e.__context__, ProtocolError) else None
            self._fail(refused or ProtocolError(f"unparsable answer: {e}; bytes {data[:120]!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            reason = f": {exc}" if exc else ""
            self.waiter.set_exception(
                ProtocolError(f"the server closed the connection before the answer ended{reason}")
            )

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.waiter is None or self.waiter.done():  # more bytes after the answer, in the same read
            raise ProtocolError("the server sent an answer while no request was waiting")
        self._headers, self._body, self._framed = [], [], False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and value.lower().endswith(b"chunked")):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if self.parser.should_upgrade():
            raise ProtocolError(f"the server upgraded the connection (HTTP {status})")
        if not self._framed and status not in _NO_BODY_STATUSES and not 100 <= status < 200:
            raise ProtocolError(f"HTTP {status} without Content-Length or chunked encoding: its end is unknown")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (never asked for): the real one follows
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        response = Response(status, self._headers, body, self.parser.should_keep_alive())
        waiter, self.waiter = self.waiter, None
        assert waiter is not None
        waiter.set_result(response)

    def _fail(self, error: Exception) -> None:
        self.closed = True  # the next request opens a new connection
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        else:
            self.failure = error
        if self.transport is not None:
            self.transport.abort()


class LeanConnection:
    """One keep-alive HTTP/1.1 connection to ``host:port``, one request at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        # Sent with every request, encoded once: Host first, then the caller's (e.g. Authorization).
        lines = [f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self._common = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._protocol: _Protocol | None = None
        self.reconnects = 0  # connections opened again after the server closed one between requests

    @classmethod
    async def open(cls, host: str, port: int, headers: dict[str, str] | None = None) -> LeanConnection:
        connection = cls(host, port, headers)
        await connection._connect()
        return connection

    @classmethod
    async def to(cls, base_url: str, headers: dict[str, str] | None = None) -> LeanConnection:
        """A connection to ``http://host:port`` (no TLS: a load generator on the server's machine)."""
        scheme, _, rest = base_url.partition("://")
        host, _, port = rest.rstrip("/").partition(":")
        if scheme != "http" or not host:
            raise ValueError(f"only http://host[:port] is supported, not {base_url!r}")
        return await cls.open(host, int(port or 80), headers)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
        self._protocol = protocol

    def request_bytes(
        self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"
    ) -> bytes:
        """The whole request, to be sent as many times as wanted."""
        head = f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + self._common
        if body is None:
            return head + b"\r\n"
        return head + f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode("latin-1") + body

    async def send(self, request: bytes) -> Response:
        """Send ``request`` (from ``request_bytes``) and wait for its whole answer."""
        protocol = self._protocol
        if protocol is not None and protocol.failure is not None:
            failure, protocol.failure = protocol.failure, None
            raise failure  # once; the connection is closed, the next request opens another
        if protocol is None or protocol.closed:
            if protocol is not None:
                self.reconnects += 1
            await self._connect()
            protocol = self._protocol
            assert protocol is not None
        if protocol.waiter is not None:
            raise ProtocolError("a request is already waiting on this connection")
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        protocol.waiter = waiter
        assert protocol.transport is not None
        protocol.transport.write(request)
        response = await waiter
        if not response.keep_alive:
            await self._drop()
        return response

    async def _drop(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def close(self) -> None:
        await self._drop()
