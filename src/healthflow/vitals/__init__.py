"""Bedside telemetry: devices, readings, NEWS2 scoring and clinical alerts."""
