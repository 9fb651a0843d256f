"""Timestamps as the Jupyter APIs write them (ISO 8601, UTC, microseconds, a Z)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
