"""Adapters under the application: the event store's audit chain, the access log, personal data
sealing and its keys, the embedded PostgreSQL and NATS, settings, logging and failpoints.

- ``infrastructure.settings``: typed settings, read once from the environment;
- ``infrastructure.chain`` / ``infrastructure.verify``: the HMAC chain over stored events, and its checks;
- ``infrastructure.access_log``: who read whose personal data;
- ``infrastructure.personal_data``: per-person keys, sealing, erasure and key rotation;
- ``infrastructure.embedded``: the embedded PostgreSQL and NATS of the no-configuration default.
"""
