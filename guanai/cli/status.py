"""``guanai status``: where this installation's servers are, without starting anything.

A responder's device or a script that subscribes to alerts needs the NATS URL; the embedded
NATS listens on a port the system picks unless ``GUANAI_NATS_PORT`` fixes one. ``guanai status``
names it (``--nats-url`` prints the URL alone, for ``$(guanai status --nats-url)``), with the
database and the data directory; exit 1 when the NATS named is not running.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from infrastructure.embedded import nats_info, running_nats_url
from infrastructure.settings import Settings, redacted_url


def _nats(settings: Settings) -> tuple[str | None, bool]:
    """(the NATS URL, whether it answers now)."""
    if settings.nats_url is not None:
        url = urlsplit(settings.nats_url)
        return settings.nats_url, nats_info(url.hostname or "127.0.0.1", url.port or 4222) is not None
    running = running_nats_url(settings.data_path)
    return running, running is not None


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    url, up = _nats(settings)
    if args.nats_url:
        if url is not None and up:
            print(redacted_url(url))
        return 0 if up else 1
    where = "configured (GUANAI_NATS_URL)" if settings.nats_url else "embedded"
    if url is None:
        fixed = (
            f"port {settings.nats_port}"
            if settings.nats_port
            else "a port the system picks (GUANAI_NATS_PORT fixes one)"
        )
        print(f"NATS:      embedded, not running (`guanai serve` starts it on {fixed})")
    else:
        print(f"NATS:      {redacted_url(url)}  {where}, {'running' if up else 'not answering'}")
        print("           alerts on alerts.<county code>.<township code | county>, JetStream stream GUANAI_EVENTS")
    database = (
        redacted_url(settings.database_url)
        if settings.database_url
        else f"embedded, under {settings.data_path / 'postgres'}"
    )
    print(f"database:  {database}")
    print(f"data dir:  {settings.data_path}")
    return 0 if up else 1
