"""The alert stream: every alert the router publishes is also kept in JetStream for a while, so
that a responder's device that was away (no signal, asleep, reconnecting) gets what it missed.

The router publishes alerts on core NATS subjects (``alerts.<county>.<township|county|further>``)
with ``Nats-Msg-Id`` = the alert id; the stream ``GUANAI_ALERTS`` captures those subjects (and
drops a repeat of the same alert id inside its duplicate window), keeping each alert for
``ALERT_RETENTION_SECONDS``. A console that reconnects with ``Last-Event-ID`` (the last alert
id it saw) is replayed what came after it (``api/emergencies.py``); a NATS client can do the
same with a consumer of its own on this stream.
"""

from __future__ import annotations

from typing import Any

from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

ALERT_STREAM = "GUANAI_ALERTS"
ALERT_RETENTION_SECONDS = 7 * 24 * 3600  # a phone off for a long weekend still finds its alerts
ALERT_DUPLICATE_WINDOW_SECONDS = 15 * 60  # the router's fast path and the Routed event's path send one alert twice


async def ensure_alert_stream(js: Any, prefix: str, replicas: int = 1) -> None:
    """Create the alert stream over ``<prefix>.>`` (or bring its retention in line, keeping the
    replicas it has)."""
    config = StreamConfig(
        name=alert_stream_name(prefix),
        subjects=[f"{prefix}.>"],
        storage=StorageType.FILE,
        max_age=ALERT_RETENTION_SECONDS,
        discard=DiscardPolicy.OLD,
        duplicate_window=ALERT_DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        current = await js.stream_info(config.name)
        config.num_replicas = current.config.num_replicas
        await js.update_stream(config)


def alert_stream_name(prefix: str) -> str:
    """The alert stream of an alert subject prefix (tests use prefixes of their own)."""
    return ALERT_STREAM if prefix == "alerts" else f"{ALERT_STREAM}_{prefix.upper().replace('.', '_')}"
