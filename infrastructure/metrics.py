"""What operators scrape: the process's figures in the Prometheus text format (prometheus-client).

Every metric is defined here, once, on the library's default registry, so one process (``guanai
serve``: API, projector, relay and workers together) shows them all on the API's ``/metrics``,
and a worker run on its own shows its own on a small HTTP endpoint (``serve_metrics``, port
``GUANAI_METRICS_PORT``). Labels name code, never people: a command, a route template, a
consumer, a level; no ids, no names, no free text.

Who may read them: figures only, but they tell how busy a county is, so ``GUANAI_METRICS_TOKEN``
(when set) must come as ``Authorization: Bearer <token>`` (``token_allows``), on the API and on
the workers' endpoints alike. Without it they are open to whoever reaches the port: on a county
intranet, the monitoring host.

Gauges that need a look at the store (how many events the relay and the views trail) are read
when scraped, from the live objects that ``watch`` registers, not kept up to date on every event.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = structlog.get_logger("guanai.metrics")

# Seconds: commands and requests take milliseconds; alerts a few tens of them, more past a crash.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

COMMAND_SECONDS = Histogram(
    "guanai_command_seconds",
    "Time to decide and save one command of the application, by command (retries included).",
    ["command"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "guanai_http_requests",
    "HTTP requests answered by the API, by method, route template and status.",
    ["method", "route", "status"],
)
KEY_CACHE = Counter(
    "guanai_key_cache_lookups",
    "Personal data keys looked up in this process's cache: hit, or miss (read from the store).",
    ["result"],
)
ALERT_SECONDS = Histogram(
    "guanai_alert_latency_seconds",
    "From the event that asks for an alert (a report filed: level 0; an escalation: level n) being "
    "recorded to the alert published, by the router that routed it.",
    ["level"],
    buckets=LATENCY_BUCKETS,
)
CONSUMER_MESSAGES = Counter(
    "guanai_consumer_messages",
    "Messages answered by a worker's durable consumer, by consumer and outcome (ack, nak, term, error).",
    ["consumer", "outcome"],
)
REDELIVERIES = Counter(
    "guanai_consumer_redeliveries",
    "Messages a consumer received again (delivered more than once: a nak, a crash, an ack lost).",
    ["consumer"],
)
DEAD_LETTERS = Counter(
    "guanai_dead_letters",
    "Messages recorded as dead letters, by consumer and cause (refused, max_deliveries, undecodable).",
    ["consumer", "cause"],
)
RELAY_PUBLISHED = Counter("guanai_relay_published", "Events the relay published to JetStream.", ["relay"])
RECONCILED = Counter(
    "guanai_reconciled",
    "Reports a reconciler routed or escalated because the stream did not bring them (should stay near 0).",
    ["worker"],
)


class Watched(Collector):
    """Gauges read when scraped from live objects: ``watch(read)`` adds a reader that yields
    ``(label value, figure)`` pairs and returns the function that removes it again."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self._readers: dict[int, Callable[[], Iterable[tuple[str, float]]]] = {}
        self._lock = threading.Lock()
        self._next = 0

    def watch(self, read: Callable[[], Iterable[tuple[str, float]]]) -> Callable[[], None]:
        with self._lock:
            key, self._next = self._next, self._next + 1
            self._readers[key] = read

        def unwatch() -> None:
            with self._lock:
                self._readers.pop(key, None)

        return unwatch

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            readers = list(self._readers.values())
        for read in readers:
            try:
                for value, figure in read():
                    family.add_metric([value], figure)
            except Exception as e:  # noqa: BLE001 - a scrape reports what it can; the store may be away
                log.warning("metric_unreadable", metric=self.name, error=type(e).__name__)
        yield family


RELAY_BEHIND = Watched(
    "guanai_relay_events_behind", "Events stored and not yet published by the relay (read when scraped).", "relay"
)
PROJECTION_BEHIND = Watched(
    "guanai_projection_events_behind",
    "Events stored and not yet applied by the slowest view of a projector (read when scraped).",
    "projector",
)
PROJECTION_SECONDS_BEHIND = Watched(
    "guanai_projection_seconds_behind",
    "Age of the oldest event a projector's slowest view has not applied (read when scraped).",
    "projector",
)
PROJECTION_POSITION = Watched(
    "guanai_projection_position",
    "The notification id the slowest view of a projector has applied up to (read when scraped).",
    "projector",
)
for _collector in (RELAY_BEHIND, PROJECTION_BEHIND, PROJECTION_SECONDS_BEHIND, PROJECTION_POSITION):
    REGISTRY.register(_collector)


def watch_projector(name: str, lag: Callable[[], dict[str, Any]]) -> Callable[[], None]:
    """Show a projector's lag (``ProjectionRunner.lag``) under ``name``; returns the unwatch function.
    One look at the store per scrape serves the three gauges (collected in this order)."""
    last: dict[str, Any] = {}

    def events() -> Iterable[tuple[str, float]]:
        last.clear()
        last.update(lag())
        return [(name, float(last["events_behind"]))]

    def seconds() -> Iterable[tuple[str, float]]:
        figures = last or lag()
        return [(name, float(figures["seconds_behind"]))]

    def position() -> Iterable[tuple[str, float]]:
        figures = last or lag()
        return [(name, float(figures["position"]))]

    unwatches = [
        PROJECTION_BEHIND.watch(events),
        PROJECTION_SECONDS_BEHIND.watch(seconds),
        PROJECTION_POSITION.watch(position),
    ]

    def unwatch() -> None:
        for u in unwatches:
            u()

    return unwatch


def time_commands(app: Any) -> Any:
    """Time every command of ``app`` (a CareApplication) under its name: a command is a public
    method that takes ``meta`` (the CommandMeta every command carries). Returns ``app``."""
    for name, function in inspect.getmembers(type(app), inspect.isfunction):
        if not name.startswith("_") and "meta" in inspect.signature(function).parameters:
            setattr(app, name, _timed(COMMAND_SECONDS.labels(name), getattr(app, name)))
    return app


def _timed(histogram: Any, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    return timed


def exposition() -> tuple[bytes, str]:
    """This process's metrics in the Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def token_allows(token: str | None, authorization: str | None) -> bool:
    """Whether a request with this Authorization header may read the metrics."""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not worth a log line each."""


class MetricsServer:
    """``/metrics`` of a worker process, on its own port, in a daemon thread."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        metrics_app = make_wsgi_app(REGISTRY)

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if not token_allows(token, environ.get("HTTP_AUTHORIZATION")):
                start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
                return [b"metrics need the bearer token of GUANAI_METRICS_TOKEN\n"]
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]

        self._server = make_server(host, port, app, _Server, handler_class=_QuietHandler)
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics_serving", port=self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(host: str, port: int | None, token: str | None) -> MetricsServer | None:
    """Start a worker's metrics endpoint when a port is set (0: any free port); None otherwise."""
    if port is None:
        return None
    return MetricsServer(host, port, token).start()
