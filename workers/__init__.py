"""Long-running worker processes (projector now; relay, scheduler, router, escalator later)."""
