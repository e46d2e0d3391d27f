"""Wiring of the composition root (see healthflow.app)."""
