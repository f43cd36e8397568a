"""Adapters under the application: the event store's audit chain, the access log, personal data
sealing and its keys, the embedded PostgreSQL and NATS, settings, logging and failpoints.

- ``infrastructure.settings``: typed settings, read once from the environment;
- ``infrastructure.chain`` / ``infrastructure.verify``: the HMAC chain over stored events, and its checks;
- ``infrastructure.access_log``: who read whose personal data;
- ``infrastructure.personal_data``: per-person keys, sealing, erasure and key rotation;
- ``infrastructure.lookup_hash``: keyed hashes that find a record by a phone or identity number;
- ``infrastructure.credentials`` / ``infrastructure.passwords``: accounts' secrets and sessions,
  Argon2id hashes and the common-password list;
- ``infrastructure.embedded``: the embedded PostgreSQL and NATS of the no-configuration default.
"""
