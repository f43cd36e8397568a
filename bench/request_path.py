"""Where one request's time goes at one client, segment by segment, with the API process probed.

    python -m bench.request_path [--registrations 300] [--warm-up 100] [--stop-projector]

Starts the projector and the API on a scratch database, the API as ``guanai api`` with timing
probes (this module with ``--serve``), seeds a county, then registers children one at a time with
the lean client (bench/lean_http.py), then sends the HTTP edge's refused body (bench.api_ingest's
floor) as many times. Each probe records ``time.perf_counter`` (the same clock in both processes,
CLOCK_MONOTONIC) and its thread's CPU clock: uvicorn's ``data_received``, the ASGI app's entry,
the start and end of the response, the hop to the handler's worker thread and back, the access
check the guard left to that thread (``Access.settle``, with the read of what the body names),
the command, the application's ``save`` (the group's transaction) and ``saved``. Each client
round trip is cut at the probes that fall inside it; the table gives each segment's p50 and mean
wall time, and the p50 of its thread's CPU where both ends are on one thread (the segments
between threads or processes are waits and hand-overs). The probes cost a few µs each.

``--stop-projector``: the registrations in blocks of 50, alternately with the projector stopped
(SIGSTOP; resumed and caught up before the next block): what its competing work adds at one
client.

``--compare-clients``: no probes' table; instead blocks of ``--block`` registrations at one
client, alternately sent by the lean client and by httpx (``AsyncClient``, as bench.api_ingest
``--client httpx`` sends them), the order of the pair swapped every round: each one's p50 and
this process's CPU per request, on the same server in the same minutes. At one client the
client's own CPU is on every request's path.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.api_ingest import Bodies, encode_body, refused_body, seed_county
from bench.common import DEFAULT_NATS_URL, DEFAULT_SERVER_URL, guanai_server, print_table, reachable, scratch_database
from bench.lean_http import LeanConnection

PROBE_FILE = "BENCH_PROBES_FILE"  # where the probed API writes its events (not a GUANAI_ setting)
Event = tuple[str, float, float, int]  # label, perf_counter, thread CPU, thread


# ---- the probed API (runs in the API's process) -----------------------------------------------


def serve() -> int:
    """``guanai api`` with probes; SIGUSR1 writes the events recorded so far to the dump file."""
    events: list[Event] = []
    clock, cpu, ident = time.perf_counter, time.thread_time, threading.get_ident

    def mark(label: str) -> None:
        events.append((label, clock(), cpu(), ident()))

    def dump(*_: object) -> None:
        Path(os.environ[PROBE_FILE]).write_text(json.dumps(events))
        events.clear()

    signal.signal(signal.SIGUSR1, dump)

    import litestar.concurrency
    import uvicorn
    from uvicorn.protocols.http import httptools_impl

    from api.access import checks
    from application import care
    from guanai.cli.main import main

    received = httptools_impl.HttpToolsProtocol.data_received

    def data_received(self: Any, data: bytes) -> None:
        mark("bytes read")
        received(self, data)

    httptools_impl.HttpToolsProtocol.data_received = data_received  # type: ignore[method-assign]

    to_thread = litestar.concurrency._run_sync_asyncio

    async def run_sync(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def timed(*a: Any, **k: Any) -> Any:
            mark("thread starts")
            try:
                return fn(*a, **k)
            finally:
                mark("thread ends")

        mark("hop to thread")
        result = await to_thread(timed, *args, **kwargs)
        mark("back on loop")
        return result

    litestar.concurrency._run_sync_asyncio = run_sync

    def probed(cls: Any, name: str, label: str) -> None:
        real = getattr(cls, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            mark(f"{label} starts")
            try:
                return real(self, *args, **kwargs)
            finally:
                mark(f"{label} ends")

        setattr(cls, name, wrapper)

    probed(checks.Access, "settle", "access check")
    probed(care.CareApplication, "register_person", "command")
    probed(care.CareApplication, "save", "save")
    probed(care.CareApplication, "saved", "saved")

    serve_with = uvicorn.run  # guanai.cli.run calls uvicorn.run(...) by the module's attribute

    def uvicorn_run(app: Any, **kwargs: Any) -> None:
        async def outermost(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            mark("app called")

            async def sending(message: Any) -> None:
                if message["type"] == "http.response.start":
                    mark("response starts")
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    mark("response written")

            await app(scope, receive, sending)
            mark("app returns")

        serve_with(outermost, **kwargs)

    uvicorn.run = uvicorn_run
    return main(["api"])


# ---- the client (this process) ----------------------------------------------------------------


async def one_client(
    base_url: str,
    token: str,
    villages: list[str],
    registrations: int,
    warm_up: int,
    stop: Callable[[bool], None] | None,
) -> list[tuple[str, float, float]]:
    """(kind, sent, answered) of each measured request; every answer checked."""
    c = await LeanConnection.to(base_url, {"Authorization": f"Bearer {token}"})
    bodies = Bodies(11)
    children = [bodies.child(villages[i % len(villages)]) for i in range(warm_up + registrations)]
    requests = [(b["id"], c.request_bytes("POST", "/persons", encode_body(b))) for b in children]
    refused = c.request_bytes("POST", "/persons", encode_body(refused_body(villages[0])))
    marks: list[tuple[str, float, float]] = []
    kind = "register_child"
    try:
        for i, (child_id, request) in enumerate(requests):
            if stop is not None and i >= warm_up and (i - warm_up) % 50 == 0:
                stopped = kind == "register_child"
                await asyncio.to_thread(stop, stopped)
                kind = "register_child, projector stopped" if stopped else "register_child"
            t0 = time.perf_counter()
            r = await c.send(request)
            t1 = time.perf_counter()
            if r.status != 201 or json.loads(r.body)["id"] != child_id:
                raise RuntimeError(f"registration answered {r.status}: {r.body[:300]!r}")
            if i >= warm_up:
                marks.append((kind, t0, t1))
        if stop is not None:
            await asyncio.to_thread(stop, False)
        for i in range(warm_up + registrations):
            t0 = time.perf_counter()
            r = await c.send(refused)
            t1 = time.perf_counter()
            if r.status != 422:
                raise RuntimeError(f"the refused body was answered {r.status}: {r.body[:300]!r}")
            if i >= warm_up:
                marks.append(("HTTP edge (refused body, 422)", t0, t1))
    finally:
        await c.close()
    return marks


def segments(marks: list[tuple[str, float, float]], events: list[Event]) -> None:
    events.sort(key=lambda e: e[1])
    times = [e[1] for e in events]
    for kind in dict.fromkeys(m[0] for m in marks):
        wall: dict[str, list[float]] = collections.defaultdict(list)
        cpu: dict[str, list[float]] = collections.defaultdict(list)
        trips = []
        for k, t0, t1 in marks:
            if k != kind:
                continue
            trips.append(t1 - t0)
            inside = events[bisect.bisect_left(times, t0) : bisect.bisect_right(times, t1)]
            one_wall: dict[str, float] = collections.defaultdict(float)
            one_cpu: dict[str, float] = collections.defaultdict(float)
            prev: Event = ("client sends", t0, 0.0, -1)
            for e in inside:
                name = f"{prev[0]} → {e[0]}"
                one_wall[name] += e[1] - prev[1]
                if prev[3] == e[3]:
                    one_cpu[name] += e[2] - prev[2]
                prev = e
            one_wall[f"{prev[0]} → client reads"] += t1 - prev[1]
            for name, v in one_wall.items():
                wall[name].append(v)
            for name, v in one_cpu.items():
                cpu[name].append(v)
        rows = [
            [
                name,
                len(v),
                f"{statistics.median(v) * 1000:.3f}",
                f"{statistics.mean(v) * 1000:.3f}",
                f"{statistics.median(cpu[name]) * 1000:.3f}" if name in cpu else "",
            ]
            for name, v in wall.items()
            if len(v) >= len(trips) // 10  # a neighbour's tail falling inside a few windows
        ]
        print_table(
            ["segment", "requests", "wall p50 ms", "wall mean ms", "thread CPU p50 ms"],
            rows,
            title=f"{kind}: {len(trips)} requests, round trip p50 {statistics.median(trips) * 1000:.3f} ms, "
            f"mean {statistics.mean(trips) * 1000:.3f} ms",
        )


async def compare_clients(base_url: str, token: str, villages: list[str], rounds: int, block: int) -> None:
    """Blocks of registrations, lean and httpx alternately; p50 and client CPU per request of each."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    lean = await LeanConnection.to(base_url, headers)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
        bodies = Bodies(12)

        async def by_lean(body: dict[str, Any]) -> None:
            r = await lean.send(lean.request_bytes("POST", "/persons", encode_body(body)))
            if r.status != 201 or json.loads(r.body)["id"] != body["id"]:
                raise RuntimeError(f"registration answered {r.status}: {r.body[:300]!r}")

        async def by_httpx(body: dict[str, Any]) -> None:
            r = await client.post("/persons", json=body)
            if r.status_code != 201 or r.json()["id"] != body["id"]:
                raise RuntimeError(f"registration answered {r.status_code}: {r.text[:300]}")

        senders = {"lean": by_lean, "httpx": by_httpx}
        wall: dict[str, list[float]] = {k: [] for k in senders}
        cpu = dict.fromkeys(senders, 0.0)
        for r in range(rounds + 1):  # the first round warms both up
            for name in ("lean", "httpx") if r % 2 else ("httpx", "lean"):
                # Encoded here for both (the lean client's bytes per request included in its CPU,
                # as httpx encodes its own): only the sending and the answer's reading differ.
                batch = [bodies.child(villages[i % len(villages)]) for i in range(block)]
                began = time.process_time()
                for body in batch:
                    t0 = time.perf_counter()
                    await senders[name](body)
                    if r:
                        wall[name].append(time.perf_counter() - t0)
                if r:
                    cpu[name] += time.process_time() - began
    await lean.close()
    rows = [
        [
            name,
            len(v),
            f"{statistics.median(v) * 1000:.3f}",
            f"{sorted(v)[len(v) // 4] * 1000:.3f} / {sorted(v)[len(v) * 3 // 4] * 1000:.3f}",
            f"{cpu[name] / len(v) * 1000:.3f}",
        ]
        for name, v in wall.items()
    ]
    print_table(
        ["client", "registrations", "p50 ms", "p25 / p75 ms", "client CPU ms a request"],
        rows,
        title=f"register_child at one client, {rounds} rounds of {block} per client, alternating",
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.request_path", description=__doc__.split("\n\n")[0])
    p.add_argument("--registrations", type=int, default=300, help="measured registrations (and refused bodies)")
    p.add_argument("--warm-up", type=int, default=100, help="unmeasured ones before each (default 100)")
    p.add_argument("--stop-projector", action="store_true", help="alternate blocks with the projector stopped")
    p.add_argument("--compare-clients", action="store_true", help="lean and httpx alternately, no probes")
    p.add_argument("--rounds", type=int, default=8, help="--compare-clients: rounds (default 8)")
    p.add_argument("--block", type=int, default=50, help="--compare-clients: registrations a block (default 50)")
    p.add_argument("--database-url", default=DEFAULT_SERVER_URL)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the probed API's own command
    args = p.parse_args(argv)
    if args.serve:
        return serve()
    nats_url = DEFAULT_NATS_URL if reachable(DEFAULT_NATS_URL) else None
    with tempfile.TemporaryDirectory(prefix="guanai-probes-") as tmp:
        dump = Path(tmp) / "events.json"
        os.environ[PROBE_FILE] = str(dump)  # the API's environment is this process's
        # The probed API, except to compare the clients (then ``guanai api`` as it is).
        api = None if args.compare_clients else [sys.executable, "-m", "bench.request_path", "--serve"]
        with (
            scratch_database(args.database_url, prefix="guanai_bench_path") as database_url,
            guanai_server(database_url, nats_url=nats_url, api_command=api) as server,
        ):
            villages = seed_county(server, server.token(), 2)
            if args.compare_clients:
                asyncio.run(compare_clients(server.base_url, server.token(), villages, args.rounds, args.block))
                print(f"load average {os.getloadavg()[0]:.2f} at the end")
                return 0

            def stop(stopped: bool) -> None:
                if stopped:
                    os.kill(server.projector.pid, signal.SIGSTOP)
                else:
                    os.kill(server.projector.pid, signal.SIGCONT)
                    server.wait_for_views()

            marks = asyncio.run(
                one_client(
                    server.base_url,
                    server.token(),
                    villages,
                    args.registrations,
                    args.warm_up,
                    stop if args.stop_projector else None,
                )
            )
            os.kill(server.api.pid, signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while not dump.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)  # written whole: the dump is one write of a few MB at most
            events: list[Event] = [(e[0], e[1], e[2], e[3]) for e in json.loads(dump.read_text())]
        del os.environ[PROBE_FILE]
    print(f"\n## A request's path at one client, load average {os.getloadavg()[0]:.2f} at the end\n")
    segments(marks, events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
