"""Structured logs (structlog): JSON lines with a request id; no PHI is ever passed to a logger,
and the redaction processor masks any that is (security/redaction.py)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from healthflow.security.redaction import redact_phi


def configure(level: str, fmt: str, *, stream: TextIO | None = None, cache: bool = True) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_phi,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=cache,
    )
