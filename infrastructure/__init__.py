"""Adapters: the store, keys, sealing, hashing and the other outside things the application uses."""
