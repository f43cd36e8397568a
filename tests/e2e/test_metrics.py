"""Operators scrape real processes over HTTP, and the figures move when work is done: a worker
process's own endpoint (guarded by its token) counts its dead letters, redeliveries and relayed
events; ``guanai projector`` shows its lag; the API's ``/metrics`` (one process, as ``guanai
serve``) shows the alert latency, the commands and the requests after a report is filed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from domain.base import CommandMeta
from tests.api_support import ApiServer, api_server, client, free_port, own_server  # noqa: F401 - fixtures
from tests.app_support import make_care
from tests.emergency_support import County, Names, delete_stream, emergency_workers
from tests.integration.test_relay import js, names, seed  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-" + uuid.uuid4().hex

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(url, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


# A worker process as `guanai router` is one: the runner (workers/consumer.py) over a stream of
# its own, a relay, and the metrics endpoint. Its handler refuses people (dead letters) and puts
# every org unit off once (redeliveries).
WORKER = """
import sys
from infrastructure.metrics import serve_metrics
from tests.app_support import make_care
from workers.consumer import ACK, ConsumerSpec, Nak, Plan, Term, WorkerSpec, worker
from workers.relay import relay_worker
from workers.runtime import run_until_signalled
url, nats_url, stream, prefix, durable, token, port_file = sys.argv[1:8]

async def handle(envelope, msg):
    if envelope.is_("Person", "Registered"):
        return Term("people are refused here")
    if envelope.is_("OrgUnit") and msg.metadata.num_delivered == 1:
        return Nak(0.05)
    return ACK

async def plan(resources):
    return Plan(consumers=[ConsumerSpec(durable, [prefix + ".>"], handle)])

server = serve_metrics("127.0.0.1", 0, token)
open(port_file + ".tmp", "w").write(str(server.port))
__import__("os").replace(port_file + ".tmp", port_file)
common = {"stream": stream, "subject_prefix": prefix}
make_app = lambda: make_care(url, pool_size=2)
sys.exit(run_until_signalled(
    relay_worker(make_app, url, nats_url, name=durable, **common),
    worker(WorkerSpec("test-worker", make_app, url, nats_url, plan, **common)),
))
"""


@pytest.fixture
def process_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def test_a_worker_process_shows_its_dead_letters_redeliveries_and_relay_behind_its_token(
    fresh_database_url: str,
    nats_url: str,
    js: Any,
    names: Any,
    meta: CommandMeta,
    process_env: dict[str, str],
    tmp_path: Path,
) -> None:
    durable = f"metrics-{uuid.uuid4().hex[:8]}"
    port_file = tmp_path / "port"
    args = [sys.executable, "-c", WORKER, fresh_database_url, nats_url, names.stream, names.prefix, durable, TOKEN,
            str(port_file)]  # fmt: skip
    process = subprocess.Popen(args, env=process_env, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        port = wait_for(lambda: port_file.exists() and port_file.read_text(), "the worker's metrics port")
        url = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(url, timeout=10).status_code == 401, "no token, no figures"
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        before = scrape(url, TOKEN)
        assert value(before, "guanai_dead_letters_total", consumer=durable, cause="refused") == 0

        app = make_care(fresh_database_url)
        try:
            seed(app, meta, 3)  # three org units, then three people
        finally:
            app.close()
        after = wait_for(
            lambda: (
                (s := scrape(url, TOKEN))
                and value(s, "guanai_dead_letters_total", consumer=durable, cause="refused") == 3
                and value(s, "guanai_consumer_messages_total", consumer=durable, outcome="ack") == 3
                and s
            ),
            "three dead letters and three org units handled",
        )
        assert value(after, "guanai_consumer_redeliveries_total", consumer=durable) == 3
        assert value(after, "guanai_consumer_messages_total", consumer=durable, outcome="nak") == 3
        assert value(after, "guanai_consumer_messages_total", consumer=durable, outcome="term") == 3
        assert value(after, "guanai_relay_published_total", relay=durable) == 6
        assert value(after, "guanai_relay_events_behind", relay=durable) == 0
        assert ("guanai_relay_events_behind", frozenset({("relay", durable)})) in after, "the gauge is there"
    finally:
        stop(process)
    assert process.returncode == 0


def test_the_projector_process_shows_its_lag_on_the_metrics_port(
    fresh_database_url: str, meta: CommandMeta, process_env: dict[str, str]
) -> None:
    port = free_port()
    env = {**process_env, "GUANAI_DATABASE_URL": fresh_database_url, "GUANAI_METRICS_PORT": str(port)}
    env.pop("GUANAI_METRICS_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "guanai.cli.main", "projector"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL, text=True
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:

        def caught_up(position: int) -> Callable[[], Samples | None]:
            def probe() -> Samples | None:
                try:
                    s = scrape(url)
                except httpx.TransportError:
                    return None  # not listening yet
                behind = ("guanai_projection_events_behind", frozenset({("projector", "projector")}))
                at = value(s, "guanai_projection_position", projector="projector")
                return s if behind in s and s[behind] == 0 and at == position else None

            return probe

        # A fresh store (migrations take a while on a busy machine): nothing to apply yet.
        wait_for(caught_up(0), "the projector's metrics", timeout=120)
        app = make_care(fresh_database_url)
        try:
            seed(app, meta, 5)
            written = app.recorder.max_notification_id()
        finally:
            app.close()
        assert written == 8
        wait_for(caught_up(8), "the projector at position 8, nothing behind")
    finally:
        stop(process)


@pytest.fixture(scope="module")
def workers(database_url: str, nats_url: str, api_server: ApiServer) -> Iterator[Names]:
    names = Names()
    running = emergency_workers(database_url, nats_url, names).start()
    yield names
    running.stop()
    asyncio.run(delete_stream(nats_url, names.stream))


def test_filing_a_report_moves_the_alert_latency_the_commands_and_the_requests_on_the_apis_metrics(
    client: httpx.Client,
    api_server: ApiServer,
    workers: Names,
) -> None:
    url = f"{api_server.base_url}/metrics"
    county = County(client, critical=300)
    before = scrape(url)
    r = client.post("/emergencies", json=county.report(), headers=county.reporter())
    assert r.status_code == 201, r.text
    after = wait_for(
        lambda: (
            (s := scrape(url))
            and value(s, "guanai_alert_latency_seconds_count", level="0")
            > value(before, "guanai_alert_latency_seconds_count", level="0")
            and s
        ),
        "the alert's latency observed",
    )
    alerted = value(after, "guanai_alert_latency_seconds_sum", level="0") - value(
        before, "guanai_alert_latency_seconds_sum", level="0"
    )
    assert 0 < alerted < 30, "seconds from the report filed to its alert"
    for command in ("file_emergency", "route_emergency"):
        assert value(after, "guanai_command_seconds_count", command=command) > value(
            before, "guanai_command_seconds_count", command=command
        ), command
    created = {"method": "POST", "route": "/emergencies", "status": "201"}
    assert (
        value(after, "guanai_http_requests_total", **created)
        == value(before, "guanai_http_requests_total", **created) + 1
    )
    assert (
        value(after, "guanai_key_cache_lookups_total", result="hit")
        + value(after, "guanai_key_cache_lookups_total", result="miss")
        > 0
    )
    # A route template, never an id: the path of a report read is counted under its template.
    client.get(f"/emergencies/{r.json()['id']}")
    labels = {dict(k[1]).get("route") for k in scrape(url) if k[0] == "guanai_http_requests_total"}
    assert "/emergencies/{report_id}" in labels and not any(r.json()["id"] in (x or "") for x in labels)


def test_metrics_need_the_token_when_one_is_set(pg_base_url: str) -> None:
    """A server of its own (the shared one has no token): the token's check, on the API."""
    with own_server(pg_base_url, None, metrics_token=TOKEN) as guarded:
        url = f"{guarded.base_url}/metrics"
        refused = httpx.get(url, timeout=10)
        assert refused.status_code == 401 and refused.headers["content-type"].startswith("application/problem+json")
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        shown = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert shown.status_code == 200 and "guanai_http_requests_total" in shown.text
