"""Adapters: the event store, the Merkle tree and its proofs, crypto suites, keys and sealing."""
