"""The JetStream stream every stored event is relayed onto, and that every worker consumes."""

from __future__ import annotations

from typing import Any

from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from infrastructure.settings import load_settings

STREAM = "GUANAI_EVENTS"
SUBJECT_PREFIX = "guanai.events"
DUPLICATE_WINDOW_SECONDS = 15 * 60  # longer than any restart we expect; consumers dedupe beyond it


async def ensure_stream(
    js: Any, stream: str = STREAM, prefix: str = SUBJECT_PREFIX, replicas: int | None = None
) -> None:
    """Create the stream (with ``replicas`` copies, GUANAI_STREAM_REPLICAS by default), or bring
    an existing one's subjects and duplicate window in line, keeping the replicas it has: every
    worker calls this at start, and none of them should scale a stream an operator changed."""
    config = StreamConfig(
        name=stream,
        subjects=[f"{prefix}.>"],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas if replicas is not None else load_settings().stream_replicas,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        current = await js.stream_info(stream)
        config.num_replicas = current.config.num_replicas
        await js.update_stream(config)
