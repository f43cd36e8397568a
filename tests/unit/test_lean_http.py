"""The benchmarks' lean HTTP client (bench/lean_http.py) against a socket server in the test: each
answer parsed exactly (split anywhere, chunked, keep-alive), and everything it cannot take refused
loudly rather than guessed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bench.lean_http import LeanConnection, ProtocolError

Answer = Callable[[bytes, asyncio.StreamWriter], Coroutine[Any, Any, bool]]  # False: close the connection


@asynccontextmanager
async def server(answer: Answer) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server that reads each request (head and Content-Length body) and lets ``answer`` reply;
    yields its port and the requests it read, in order."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                request = head + await reader.readexactly(length)
                received.append(request)
                if not await answer(request, writer):
                    return
                await writer.drain()
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1], received
    finally:
        listener.close()
        await listener.wait_closed()


def fixed(*chunks: bytes, keep: bool = True, pause: float = 0.0) -> Answer:
    async def answer(_: bytes, writer: asyncio.StreamWriter) -> bool:
        for chunk in chunks:
            writer.write(chunk)
            if pause:
                await writer.drain()
                await asyncio.sleep(pause)
        return keep

    return answer


OK = b'HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 14\r\n\r\n{"id":"a-b-c"}'


async def test_a_request_is_sent_as_encoded_and_its_answer_parsed() -> None:
    async with server(fixed(OK)) as (port, received):
        c = await LeanConnection.open("127.0.0.1", port, {"Authorization": "Bearer t"})
        request = c.request_bytes("POST", "/persons", '{"name":"王"}'.encode())
        r = await c.send(request)
        await c.close()
    assert (r.status, r.body, r.keep_alive) == (201, b'{"id":"a-b-c"}', True)
    assert r.header("Content-Type") == b"application/json"
    assert received == [request]
    assert request == (
        b"POST /persons HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer t\r\n"
        b"Content-Type: application/json\r\nContent-Length: 14\r\n\r\n" % port + '{"name":"王"}'.encode()
    )


async def test_keep_alive_sequence_on_one_connection_with_answers_split_anywhere() -> None:
    # The same answer, one byte per write: every split point of head and body is crossed.
    async with server(fixed(*(OK[i : i + 1] for i in range(len(OK))), pause=0.0005)) as (port, received):
        c = await LeanConnection.open("127.0.0.1", port)
        request = c.request_bytes("GET", "/health")
        answers = [await c.send(request) for _ in range(5)]
        await c.close()
    assert [a.body for a in answers] == [b'{"id":"a-b-c"}'] * 5
    assert len(received) == 5 and c.reconnects == 0


async def test_chunked_answers_are_decoded() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\ntrailer: x\r\n\r\n"
    )
    async with server(fixed(chunked[:40], chunked[40:], pause=0.001)) as (port, _):
        c = await LeanConnection.open("127.0.0.1", port)
        first = await c.send(c.request_bytes("GET", "/"))
        second = await c.send(c.request_bytes("GET", "/"))  # the connection stays usable after one
        await c.close()
    assert first.body == second.body == b"hello world"


async def test_an_error_answer_and_one_without_a_body() -> None:
    problem = b'{"status":422,"title":"t"}'
    answers = iter(
        [
            b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-type: application/problem+json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(problem), problem),
            b"HTTP/1.1 204 No Content\r\n\r\n",
            OK,
        ]
    )

    async def answer(_: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(next(answers))
        return True

    async with server(answer) as (port, _):
        c = await LeanConnection.open("127.0.0.1", port)
        got = [await c.send(c.request_bytes("POST", "/persons", b"{}")) for _ in range(3)]
        await c.close()
    assert [(g.status, g.body) for g in got] == [(422, problem), (204, b""), (201, b'{"id":"a-b-c"}')]
    assert got[0].header("content-type") == b"application/problem+json"


async def test_connection_close_answer_then_a_new_connection() -> None:
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    async with server(fixed(closing, keep=False)) as (port, received):
        c = await LeanConnection.open("127.0.0.1", port)
        first = await c.send(c.request_bytes("GET", "/"))
        second = await c.send(c.request_bytes("GET", "/"))
        await c.close()
    assert (first.keep_alive, first.body, second.body) == (False, b"ok", b"ok")
    assert len(received) == 2


async def test_an_idle_connection_closed_by_the_server_is_opened_again_and_counted() -> None:
    async with server(fixed(OK, keep=False)) as (port, _):  # closes after answering, keep-alive header or not
        c = await LeanConnection.open("127.0.0.1", port)
        await c.send(c.request_bytes("GET", "/"))
        await asyncio.sleep(0.05)  # the server's close arrives while idle
        r = await c.send(c.request_bytes("GET", "/"))
        await c.close()
    assert r.status == 201 and c.reconnects == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close", "its end is unknown"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", "closed the connection before the answer ended"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel", "closed the connection before"),
        (b"SMTP ready\r\n\r\n", "unparsable answer"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", "unparsable answer"),
        (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n", "upgraded"),
        (b"", "closed the connection before"),
    ],
)
async def test_answers_it_cannot_take_are_refused_loudly(answer: bytes, message: str) -> None:
    async with server(fixed(answer, keep=False)) as (port, _):
        c = await LeanConnection.open("127.0.0.1", port)
        with pytest.raises(ProtocolError, match=message):
            await c.send(c.request_bytes("GET", "/"))
        await c.close()


async def test_bytes_after_an_answer_are_refused_at_the_next_request() -> None:
    async with server(fixed(OK + b"HTTP/1.1 200 OK\r\n")) as (port, _):
        c = await LeanConnection.open("127.0.0.1", port)
        first = await c.send(c.request_bytes("GET", "/"))
        await asyncio.sleep(0.05)
        with pytest.raises(ProtocolError, match="while no request was waiting"):
            await c.send(c.request_bytes("GET", "/"))
        await c.close()
    assert first.status == 201


async def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError, match="only http"):
        await LeanConnection.to("https://127.0.0.1:1")
