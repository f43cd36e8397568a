"""Adapters under the application: the event store's audit chain and Merkle tree, the access log,
personal data sealing and its keys, crypto suites, the embedded PostgreSQL and NATS, settings,
logging and failpoints.

- ``infrastructure.settings``: typed settings, read once from the environment;
- ``infrastructure.chain`` / ``infrastructure.verify``: the HMAC chain over stored events, and its checks;
- ``infrastructure.merkle``: the event log as a Merkle tree (RFC 9162), its proofs and signed checkpoints;
- ``infrastructure.verifier``: the standalone verifier outside parties run with the log's public key;
- ``infrastructure.suites``: the crypto suites (international, gm) and signing keys;
- ``infrastructure.access_log``: who read whose personal data;
- ``infrastructure.personal_data``: per-person keys, sealing, erasure and key rotation;
- ``infrastructure.lookup_hash``: keyed hashes that find a record by a sealed number (ID number, phone);
- ``infrastructure.credentials`` / ``infrastructure.passwords``: accounts' secrets and sessions,
  Argon2id hashes and the common-password list;
- ``infrastructure.spreadsheets`` / ``infrastructure.import_jobs``: uploads read safely, workbooks
  written; import jobs with their sealed files;
- ``infrastructure.embedded``: the embedded PostgreSQL and NATS of the no-configuration default.
"""
