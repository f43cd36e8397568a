"""Tests against PostgreSQL and NATS (the machine's, or embedded ones): stores, views, workers."""
