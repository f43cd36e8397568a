"""Adapters: the store, keys, hashes, spreadsheets and jobs the application runs on."""
