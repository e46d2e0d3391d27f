"""HealthFlow: real-time patient flow and bedside monitoring."""

__version__ = "0.1.0"
