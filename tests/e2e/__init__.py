"""End-to-end tests: through HTTP, with processes started and killed."""
