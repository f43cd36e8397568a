"""``guanai projections rebuild [NAME]``: rebuild a view (or every view) from zero while the old
one serves."""

from __future__ import annotations

import argparse
import sys
import time

from guanai import bootstrap
from guanai.cli.progress import ProgressBar
from guanai.cli.services import migrate, services
from infrastructure.settings import Settings
from projections import all_projections
from projections.rebuild import REBUILD_GC_THRESHOLD


def cmd_projections(settings: Settings, args: argparse.Namespace) -> int:
    """``projections rebuild [NAME]``: replay the log into new tables and swap them in, with a
    progress bar on stderr; the old view keeps serving until the swap."""
    names = [p.name for p in all_projections()]
    if args.name is not None and args.name not in names:
        print(f"guanai projections: no view {args.name!r}; the views are {', '.join(names)}", file=sys.stderr)
        return 2
    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
        with bootstrap.projector(settings, database_url, pool_size=2) as projector:
            for name in [args.name] if args.name else names:
                bar = ProgressBar(name)
                started = time.monotonic()
                # This process does nothing else meanwhile: the collector's setting touches nothing else.
                events = projector.runner.rebuild(name, progress=bar.update, gc_threshold=REBUILD_GC_THRESHOLD)
                bar.finish(f"rebuilt from {events:,} events in {time.monotonic() - started:.1f}s and swapped in")
    return 0
