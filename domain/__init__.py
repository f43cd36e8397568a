"""The care domain: aggregates, their events, their rules. Pure: no I/O, no clock.

Imports only the standard library, msgspec and the eventsourcing domain base.
"""
