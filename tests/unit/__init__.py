"""Tests without servers: the domain, the application on the in-memory store, the layout."""
